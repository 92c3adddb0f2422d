"""Offline Android: `build --bundle` writes models and a script, the script runs them with benchmark_model, and
`ingest` reads its log back into the store and the LUT.

The "phone" is this host: the bundle's own run_on_phone.sh runs under sh with the benchmark_model stand-in (which
really times each .tflite with LiteRT), exactly as `sh run_on_phone.sh > LOG` would on a phone.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest
import yaml
from android_fixtures import install_standin
from conftest import REJECTED, TINY_SPACE, cli_env, main_in, reject_int8_block, run_cli

SPACE = ["--resolution", "32", "--width", "0.25"]
FAST = ["--warmup", "1", "--runs", "4", "--min-seconds", "0"]
KEYS = ["ir-in16x16x8-out8-k3-e1-g1-s1", "ir-in16x16x8-out8-k3-e3-g1-s1"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, artifact_cache: Path):
    root = tmp_path_factory.mktemp("offline")
    binary = install_standin(root / "host")
    (root / "lab.yaml").write_text(yaml.safe_dump({
        "name": "labphone", "kind": "android", "description": "a phone this host cannot reach", "runtime": "litert",
        "threads": 1, "transport": "usb", "cpu_mask": "1", "thermal_zones": ["cpu*"], "cooldown_celsius": 95,
        "benchmark_binary": str(binary)}))
    env = cli_env(FBNET_LUT_CACHE=str(artifact_cache), FBNET_LUT_STORE=str(root / "store.sqlite"))

    def cli(*args: str, **kw):
        return run_cli(*args, cwd=root, env=env, **kw)

    only = [a for k in KEYS for a in ("--only", k)]
    p = cli("build", "--device", "lab.yaml", *SPACE, *FAST, *only, "--bundle", "b", "--json", check=True)
    summary = json.loads(p.stdout)
    log = subprocess.run(["sh", str(root / "b" / "run_on_phone.sh")], capture_output=True, text=True, check=True,
                         timeout=300).stdout
    return root, cli, summary, log


def _rows(root: Path) -> int:
    with sqlite3.connect(root / "store.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]


def test_bundle_holds_models_binary_and_scripts(lab):
    root, _, summary, log = lab
    b = root / "b"
    m = json.loads((b / "manifest.json").read_text())
    assert summary["status"] == "waiting_for_results" and summary["models"] == 2
    assert m["format"] == "fbnet-lut-android-bundle" and [x["key"] for x in m["models"]] == KEYS
    assert (b / "benchmark_model").is_file() and (b / "run_with_adb.sh").is_file()
    script = (b / "run_on_phone.sh").read_text()
    assert f"--benchmark_name=\"fbnet-lut/{m['bundle_id']}/$1\"" in script and "--num_runs=4" in script
    assert summary["ingest_command"].startswith("fbnet-lut ingest --device lab.yaml --bundle")
    # The script ran both models (names and paths as benchmark_model echoes them).
    assert log.count("Benchmark name: [fbnet-lut/") == 2 and log.count(" exit 0") == 2


def test_log_goes_into_store_and_lut_once(lab):
    root, cli, _, log = lab
    # Noise around the runs, a second (partial) run of one model cut before its statistics: the last complete
    # run counts, the cut one after it does not erase it.
    first = log[: log.index("fbnet-lut: " + KEYS[0] + " exit")]
    cut = first[: first.rindex("INFO: count=")]
    (root / "phone.log").write_text("logcat noise\n" + log + cut)
    p = cli("ingest", "--device", "lab.yaml", "--bundle", "b", "phone.log", "--json", check=True)
    rep = json.loads(p.stdout)
    assert sorted(rep["added"]) == KEYS and rep["missing"] == [] and rep["failed"] == {}
    lut = json.loads((root / rep["lut"]).read_text())
    entries = lut["entries"] if isinstance(lut["entries"], dict) else {e["key"]: e for e in lut["entries"]}
    assert set(KEYS) <= set(entries) and lut["header"]["complete"] is False  # 2 ops of the whole space
    # From KEYS[0]'s own summary line: its statistics line may be the "(all same)" form, which has no avg=.
    avg = float(re.search(r"Inference \(avg\): (\S+)", first)[1])
    k0 = entries[KEYS[0]]
    assert k0["mean"] == pytest.approx(avg / 1000, rel=1e-6)
    n = _rows(root)
    p = cli("ingest", "--device", "lab.yaml", "--bundle", "b", "phone.log", "--json", check=True)
    assert sorted(json.loads(p.stdout)["already_ingested"]) == KEYS and _rows(root) == n


def _fails(lab, text: str, pattern: str) -> None:
    root, cli, _, _ = lab
    n = _rows(root)
    (root / "bad.log").write_text(text)
    p = cli("ingest", "--device", "lab.yaml", "--bundle", "b", "bad.log")
    assert p.returncode == 2, p.stdout + p.stderr
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("Error: ") and re.search(pattern, err), err
    assert _rows(root) == n


def test_bad_logs_are_errors_naming_file_and_line(lab):
    log = lab[3]
    bid = re.search(r"fbnet-lut/([0-9a-f]{16})/", log)[1]
    _fails(lab, log.replace(bid, "0123456789abcdef"), r"bad.log, line \d+: this log is from bundle 0123456789abcdef")
    no_names = re.sub(r"INFO: Benchmark name: .*\n", "", log)
    _fails(lab, no_names.replace(f"{KEYS[1]}.tflite", "mobilenet.tflite"), r"bad.log, line \d+: model .*mobilenet"
                                                                          r".tflite' matches no op")
    _fails(lab, log.replace("Num threads: [1]", "Num threads: [4]", 1), r"line \d+: .* ran with 4 thread")
    _fails(lab, re.sub(r"(count=4 first=\d+ curr=\d+) min=.*", r"\1", log, count=1),
           r"bad.log, line \d+: statistics line is cut off")


def test_log_without_names_is_keyed_by_graph_path(lab):
    root, cli, _, log = lab
    plain = re.sub(r"INFO: Benchmark name: .*\n", "", log)
    (root / "plain.log").write_text(plain)
    p = cli("ingest", "--device", "lab.yaml", "--bundle", "b", "plain.log", "--json", check=True)
    assert sorted(json.loads(p.stdout)["already_ingested"]) == KEYS


def test_int8_and_fp16_bundles(lab):
    """--dtype on an offline bundle: int8 full-integer models whose LUT ingest writes as an int8 LUT (its own default
    file); fp16 models run with --xnnpack_force_fp16."""
    from latency_lut.quantize import tflite_ops

    root, cli, _, _ = lab
    s = json.loads(cli("build", "--device", "lab.yaml", *SPACE, *FAST, "--only", KEYS[0], "--dtype", "int8",
                       "--bundle", "b8", "--json", check=True).stdout)
    m = json.loads((root / "b8" / "manifest.json").read_text())
    assert s["dtype"] == "int8" and m["settings"]["dtype"] == "int8"
    ops = tflite_ops(root / "b8" / m["models"][0]["file"])
    assert {dt[0] for op, dt in ops if op.endswith("CONV_2D")} == {"int8"}, ops
    log = subprocess.run(["sh", str(root / "b8" / "run_on_phone.sh")], capture_output=True, text=True, check=True,
                         timeout=300).stdout
    (root / "int8.log").write_text(log)
    rep = json.loads(cli("ingest", "--device", "lab.yaml", "--bundle", "b8", "int8.log", "--json", check=True).stdout)
    assert rep["added"] == [KEYS[0]] and rep["lut"].endswith("labphone-litert-32-w0.25-int8.json"), rep["lut"]
    assert json.loads((root / rep["lut"]).read_text())["header"]["dtype"] == "int8"
    cli("build", "--device", "lab.yaml", *SPACE, *FAST, "--only", KEYS[0], "--dtype", "fp16", "--bundle", "b16",
        "--json", check=True)
    assert "--xnnpack_force_fp16=true" in (root / "b16" / "run_on_phone.sh").read_text()
    doc = yaml.safe_load((root / "lab.yaml").read_text())
    (root / "lab-cpu.yaml").write_text(yaml.safe_dump({**doc, "name": "labcpu", "delegate": "none"}))
    bad = cli("build", "--device", "lab-cpu.yaml", *SPACE, "--only", KEYS[0], "--dtype", "fp16", "--bundle", "bx")
    assert bad.returncode == 2 and bad.stderr.startswith("Error:") and "Traceback" not in bad.stderr
    assert "'labcpu' (delegate 'none') cannot run dtype 'fp16'" in bad.stderr and not (root / "bx").exists()


def test_block_that_fails_to_quantize_is_named_and_left_out(lab, tmp_path, monkeypatch, capsys):
    """One block of a whole space fails to quantize: the build names it with the converter's reason and bundles the
    others, the manifest records it, and ingest writes the LUT of the others, incomplete for want of it."""
    from latency_lut.spaces import get_space

    root = lab[0]
    (tmp_path / "tiny.yaml").write_text(TINY_SPACE)
    keys = [s.key for s in get_space(tmp_path / "tiny.yaml").unique_specs()]
    assert REJECTED in keys
    reject_int8_block(monkeypatch, reason="unsupported op: QUANTIZE of HARD_SWISH")
    args = ["build", "--device", str(root / "lab.yaml"), "--space", "tiny.yaml", "--dtype", "int8", *FAST,
            "--bundle", "b"]
    rc, out, err = main_in(tmp_path, monkeypatch, capsys, *args, "--json")
    assert rc == 0, err
    summary = json.loads(out)
    assert list(summary["failed"]) == [REJECTED] and "unsupported op: QUANTIZE of HARD_SWISH" in summary["failed"][
        REJECTED] and summary["models"] == len(keys) - 1
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert [x["key"] for x in m["models"]] == [k for k in keys if k != REJECTED] and m["whole_space"]
    assert m["failed"] == summary["failed"] and not list((tmp_path / "b" / "models").glob(f"{REJECTED}*"))
    assert f"run {REJECTED}" not in (tmp_path / "b" / "run_on_phone.sh").read_text()
    rc, out, _ = main_in(tmp_path, monkeypatch, capsys, *args)  # the terminal: one line per failed block
    lines = [x for x in out.splitlines() if x.startswith("failed ")]
    assert rc == 0 and len(lines) == 1 and re.match(rf"failed {REJECTED}\s+litert-torch conversion failed: "
                                                    r"unsupported op: QUANTIZE of HARD_SWISH", lines[0]), out
    assert "1 block(s) failed to export or quantize" in out

    log = subprocess.run(["sh", str(tmp_path / "b" / "run_on_phone.sh")], capture_output=True, text=True,
                         check=True, timeout=300).stdout
    (tmp_path / "phone.log").write_text(log)
    env = cli_env(FBNET_LUT_STORE=str(tmp_path / "store.sqlite"))
    rep = json.loads(run_cli("ingest", "--device", str(root / "lab.yaml"), "--bundle", "b", "phone.log", "--json",
                             cwd=tmp_path, env=env, check=True).stdout)
    assert rep["missing"] == [] and rep["failed"] == {} and rep["export_failed"] == summary["failed"]
    lut = json.loads((tmp_path / rep["lut"]).read_text())
    entries = lut["entries"] if isinstance(lut["entries"], dict) else {e["key"]: e for e in lut["entries"]}
    assert sorted(entries) == sorted(k for k in keys if k != REJECTED)
    assert rep["complete"] is False and lut["header"]["complete"] is False and lut["header"]["dtype"] == "int8"
    p = run_cli("ingest", "--device", str(root / "lab.yaml"), "--bundle", "b", "phone.log", cwd=tmp_path, env=env,
                check=True)
    assert re.search(rf"^not bundled {REJECTED}\s+litert-torch conversion failed: unsupported op", p.stdout, re.M)
    assert "the LUT stays incomplete without them" in p.stdout


def test_runtime_other_than_litert_is_refused(lab):
    """benchmark_model runs LiteRT models only: another runtime, asked for or in the descriptor, is a clean error."""
    root, cli, _, _ = lab
    bad = cli("build", "--device", "lab.yaml", *SPACE, "--only", KEYS[0], "--runtime", "onnxruntime", "--bundle",
              "bo")
    err = bad.stderr.strip()
    assert bad.returncode == 2 and len(err.splitlines()) == 1 and not (root / "bo").exists(), err
    assert err == ("Error: device 'labphone' cannot run runtime 'onnxruntime' offline: its bundle runs on the phone "
                   "with benchmark_model, which runs LiteRT models only; drop --runtime")
    doc = yaml.safe_load((root / "lab.yaml").read_text())
    (root / "lab-ort.yaml").write_text(yaml.safe_dump({**doc, "name": "labort", "runtime": "onnxruntime"}))
    bad = cli("build", "--device", "lab-ort.yaml", *SPACE, "--only", KEYS[0], "--bundle", "bo")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and not (root / "bo").exists()
    assert "device 'labort' cannot run runtime 'onnxruntime' offline" in bad.stderr
    assert "LiteRT models only; set 'runtime: litert' in lab-ort.yaml" in bad.stderr
