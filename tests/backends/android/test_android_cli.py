"""`fbnet-lut build --device <loopback descriptor>` end to end, as a subprocess, through the loopback ADB daemon."""
# ruff: noqa: F811  (pytest fixtures imported from android_fixtures are test arguments of the same name)

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from android_fixtures import LOOPBACK, env_for_cli, phone, phone_home, tiny_models  # noqa: F401
from conftest import FAST, run_cli

from latency_lut.export import artifact_path
from latency_lut.lut import load
from latency_lut.spaces import get_space
from latency_lut.store import Store

SPACE = ["--resolution", "32", "--width", "0.25"]


def private_cache(tmp_path: Path, tiny_models: dict, broken: str | None = None) -> Path:
    """An artifact cache for the whole 32x32/0.25 space holding real .tflite files.

    Exporting all 109 micro-models takes minutes, so each key gets a copy of one of the three real exported
    models: every op still really runs on the loopback phone, and the phone sees three distinct checksums.
    ``broken``: this key gets a file that is not a model.
    """
    root = tmp_path / "cache"
    real = list(tiny_models.values())
    for i, spec in enumerate(get_space("fbnet", 32, 0.25).unique_specs()):
        dest = artifact_path(spec, "tflite", root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if spec.key == broken:
            dest.write_bytes(b"not a flatbuffer" * 8)
        else:
            shutil.copyfile(real[i % len(real)], dest)
    return root


def build(tmp_path: Path, env: dict, *extra: str):
    # One round: the phone's part is resuming through a lost connection (rounds resume: tests/test_build.py).
    return run_cli("build", "--device", str(LOOPBACK), *SPACE, *FAST, "--rounds", "1", "-o", str(tmp_path / "lut.json"),
                   "--json", *extra, cwd=tmp_path, env=env, timeout=900)


def test_build_through_the_daemon_survives_a_lost_phone_and_resumes(tmp_path, phone, phone_home, tiny_models):
    store = tmp_path / "store.sqlite"
    env = env_for_cli(phone, phone_home, FBNET_LUT_CACHE=str(private_cache(tmp_path, tiny_models)),
                      FBNET_LUT_STORE=str(store))
    runs = []

    def vanish_at_the_sixth_op(command: str) -> str | None:
        if "--graph=" in command and ".no-such-model" not in command:
            runs.append(command)
            if len(runs) == 6:
                return "offline"
        return None

    phone.shell_hook = vanish_at_the_sixth_op
    t0 = time.perf_counter()
    first = build(tmp_path, env)
    assert first.returncode == 2, first.stderr
    *notices, err = first.stderr.strip().splitlines()
    assert err.startswith("Error: lost the connection to phone at 127.0.0.1:")
    assert "rerun the same command to resume" in err
    assert len(notices) == 2 and all("reconnecting" in n for n in notices)  # one notice per reconnect attempt
    with Store(store) as st:
        df = st.to_dataframe()
    assert int(df["accepted"].sum()) == 5  # the five ops measured before the phone vanished are kept

    phone.shell_hook = None
    phone.come_back()
    second = build(tmp_path, env)
    elapsed = time.perf_counter() - t0
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert summary["measured"] == 104 and summary["reused"] == 5
    assert summary["entries"] == 109 and summary["complete"] is True
    print(f"\nend-to-end build of 109 ops through the loopback daemon (two runs): {elapsed:.1f} s; "
          f"measure phase of the second run: {summary['measure_seconds']} s")

    lut = load(tmp_path / "lut.json")
    h = lut.header
    assert h["device"] == "loopback" and h["runtime"] == "litert" and h["device_kind"] == "android"
    assert h["device_info"]["model"] == "Loopback Phone" and h["device_info"]["abi"] == "x86_64"
    assert h["settings"]["cpu_mask"] == "1" and h["runtime_version"].startswith("benchmark_model sha256:")
    for entry in lut.entries.values():
        assert entry.stats.count >= 3 and entry.stats.median > 0
        assert entry.extra["temperature_c"] == 38.0
    # The binary went over the wire once, each distinct model once: the second run reused them by checksum.
    assert [p for p in phone.sent if p.endswith("benchmark_model")] == ["/data/local/tmp/fbnet-lut/benchmark_model"]
    assert len([p for p in phone.sent if p.endswith(".tflite")]) == 3
    assert not (phone.data_dir / "fbnet-lut").exists()  # the finished build cleaned up


def test_a_model_failing_on_the_phone_stops_the_build_with_its_error(tmp_path, phone, phone_home, tiny_models):
    specs = get_space("fbnet", 32, 0.25).unique_specs()
    store = tmp_path / "store.sqlite"
    env = env_for_cli(phone, phone_home, FBNET_LUT_STORE=str(store),
                      FBNET_LUT_CACHE=str(private_cache(tmp_path, tiny_models, broken=specs[2].key)))
    res = build(tmp_path, env)
    assert res.returncode == 2
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"Error: benchmark_model failed on {specs[2].key} (exit 1): ")
    assert "Failed to load model" in err[0]
    with Store(store) as st:
        df = st.to_dataframe()
    kept = list(df[df["accepted"]]["key"])  # the ops the (shuffled) round reached before the broken one
    assert specs[2].key not in kept and len(kept) == len(set(kept)) and set(kept) <= {s.key for s in specs}


def test_descriptor_with_a_mistyped_key_is_one_line(tmp_path, phone, phone_home):
    bad = tmp_path / "typo.yaml"
    bad.write_text(LOOPBACK.read_text().replace("cpu_mask:", "cpu_maks:"))
    res = run_cli("build", "--device", str(bad), *SPACE, cwd=tmp_path, env=env_for_cli(phone, phone_home))
    assert res.returncode == 2
    assert res.stderr.strip() == (f"Error: device descriptor {bad}: unknown field 'cpu_maks'; "
                                  "did you mean 'cpu_mask'?")
    assert phone.commands == []  # rejected before touching the phone


def test_measure_a_whole_model_on_the_phone(tmp_path, phone, phone_home, tiny_models):
    (tmp_path / "mymodel.py").write_text(
        "from torch import nn\n\n"
        "def net():\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU6(), nn.Conv2d(8, 8, 1))\n")
    store = tmp_path / "store.sqlite"
    env = env_for_cli(phone, phone_home, FBNET_LUT_CACHE=str(tmp_path / "cache"), FBNET_LUT_STORE=str(store))
    runs = []
    phone.shell_hook = lambda command: runs.append(command) if "--graph=" in command else None
    proc = run_cli("measure", "--device", str(LOOPBACK), "-m", "mymodel.py:net", "--input-shape", "1,3,32,32",
                   "--rounds", "2", "--warmup", "1", "--runs", "3", "--min-seconds", "0", "--json", cwd=tmp_path,
                   env=env, timeout=900, check=True)
    (m,) = json.loads(proc.stdout)["models"]
    assert m["key"].startswith("model-") and m["median_ms"] > 0 and len(m["round_ms"]) == 2
    # the whole .tflite went to the phone (named by its checksum, which the content key starts with) and
    # benchmark_model ran it once per round
    graphs = [c for c in runs if ".no-such-model" not in c]
    assert len(graphs) == 2 and all(m["key"].removeprefix("model-") in c for c in graphs)
    import sqlite3

    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM measurements WHERE key = ?", (m["key"],)).fetchone()[0] == 2
