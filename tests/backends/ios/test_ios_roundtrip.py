"""iPhone flow end to end: bundle out (build --device iphonex), the app's console log in (ingest), LUT out.

The phone is replaced by LiteRT on this machine running the bundle's own models under the bundle's own
parameters; the log is printed in the app's format (tests/ios_applog.py). Tiny space, a few ops, fast protocol.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from conftest import REJECTED, TINY_SPACE, cli_env, main_in, reject_int8_block, run_cli
from ios_applog import console_log, mean_ms, time_bundle

from latency_lut.lut import load

SPACE = ["--resolution", "32", "--width", "0.25"]
FAST = ["--warmup", "1", "--runs", "5", "--min-seconds", "0"]
KEYS = ["conv-in32x32x3-out8-k3-s2", "ir-in16x16x8-out8-k3-e1-g1-s1", "ir-in16x16x8-out8-k3-e3-g1-s1",
        "ir-in16x16x8-out8-k5-e6-g1-s1"]
DEVICE = {"product_type": "iPhone10,3", "ios_version": "16.7.10", "device_name": "Johns-iPhone"}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, artifact_cache: Path):
    """A folder with its own store, and the bundle of KEYS built in it by the CLI."""
    root = tmp_path_factory.mktemp("ios")
    env = cli_env(FBNET_LUT_CACHE=str(artifact_cache), FBNET_LUT_STORE=str(root / "store.sqlite"))

    def cli(*args: str, **kw):
        return run_cli(*args, cwd=root, env=env, **kw)

    only = [a for k in KEYS for a in ("--only", k)]
    proc = cli("build", "--device", "iphonex", *SPACE, *FAST, *only, "-q", check=True)
    bundle = next((root / "profiles" / "bundles").iterdir())
    return root, cli, bundle, proc


def rows(root: Path) -> int:
    with sqlite3.connect(root / "store.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]


def test_build_writes_bundle_and_waits(work):
    root, cli, bundle, proc = work
    assert proc.returncode == 0
    assert "Waiting for results" in proc.stdout
    assert f"fbnet-lut ingest --device iphonex --bundle {bundle.relative_to(root)}" in proc.stdout
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert [m["key"] for m in manifest["models"]] == KEYS
    assert manifest["protocol"]["runs"] == 5 and manifest["settings"]["threads"] == 1
    for m in manifest["models"]:
        params = json.loads((bundle / m["params"]).read_text())
        assert all(isinstance(v, str) for v in params.values())  # the app reads string values
        assert params["graph"] == Path(m["file"]).name and (bundle / m["file"]).stat().st_size == m["bytes"]
        assert params["benchmark_name"] == f"fbnet-lut/{manifest['bundle_id']}/{m['key']}"
        assert params["num_runs"] == "5" and params["warmup_runs"] == "1" and params["use_xnnpack"] == "true"
    assert (bundle / "run_list.txt").read_text().split() == [f"models/{k}" for k in KEYS]
    assert "fbnet-lut ingest --device iphonex" in (bundle / "README.md").read_text()

    again = cli("build", "--device", "iphonex", *SPACE, *FAST, *[a for k in KEYS for a in ("--only", k)],
                "--json", check=True)
    summary = json.loads(again.stdout)
    assert summary["bundle_reused"] is True and summary["bundle_id"] == manifest["bundle_id"]
    assert summary["exported"] == 0 and summary["status"] == "waiting_for_results"


def test_round_trip_partial_complete_and_twice(work):
    root, cli, bundle, _ = work
    timings = time_bundle(bundle)
    lut_path = root / "profiles" / "iphonex-litert-32-w0.25.json"

    # A partial run: two models done, the third started and cut off by the end of the log.
    partial = console_log(timings[:3], device=DEVICE, syslog=True)
    partial = partial[: partial.rindex("INFO: Running benchmark for at least")]
    (root / "part.log").write_text(partial)
    p = cli("ingest", "--device", "iphonex", "--bundle", str(bundle), "part.log", "--json", check=True)
    rep = json.loads(p.stdout)
    assert sorted(rep["added"]) == sorted(KEYS[:2])
    assert rep["missing"] == KEYS[2:] and list(rep["failed"]) == [KEYS[2]] and not rep["complete"]
    lut = load(lut_path)
    assert sorted(lut.entries) == sorted(KEYS[:2]) and lut.header["complete"] is False
    assert lut.header["device_info"]["product_type"] == "iPhone10,3"
    assert lut.header["device_info"]["ios_version"] == "16.7.10"
    assert lut.header["runtime"] == "litert" and lut.header["threads"] == 1

    # The whole run, as the Xcode console shows it (no syslog header), found by its bundle id (no --bundle).
    (root / "full.log").write_text(console_log(timings, device=DEVICE))
    p = cli("ingest", "--device", "iphonex", "full.log", check=True)
    assert re.search(r"^missing\s+0 of 4$", p.stdout, re.M)
    lut = load(lut_path)
    assert sorted(lut.entries) == sorted(KEYS)
    for t in timings:
        e = lut[t.key]
        assert e.stats.count == len(t.runs_us)
        assert e.stats.mean == pytest.approx(mean_ms(t), rel=1e-4)
        assert e.stats.min == pytest.approx(min(t.runs_us) / 1e3)
        assert e.stats.min <= e.stats.p10 <= e.stats.median <= e.stats.p90 <= e.stats.max
    # A subset bundle never makes the space's LUT complete.
    assert lut.header["complete"] is False

    # Ingesting the same logs again adds nothing.
    n = rows(root)
    p = cli("ingest", "--device", "iphonex", "--bundle", str(bundle), "full.log", "part.log", "--json", check=True)
    rep = json.loads(p.stdout)
    assert rep["added"] == [] and sorted(rep["already_ingested"]) == sorted(KEYS)
    assert rows(root) == n


def test_json_and_csv_results(work, tmp_path: Path):
    root, cli, bundle, _ = work
    manifest = json.loads((bundle / "manifest.json").read_text())
    bid = manifest["bundle_id"]
    timings = time_bundle(bundle, KEYS[:2])
    doc = {"format": "fbnet-lut-ios-results", "bundle_id": bid, "unit": "us",
           "device": {"product_type": "iPhone10,6"},
           "results": [{"key": timings[0].key, "samples": timings[0].runs_us},
                       {"key": "ir-in16x16x8-out8-k7-e6-g1-s1", "samples": [1, 2, 3]}]}
    (tmp_path / "r.json").write_text(json.dumps(doc))
    t = timings[1]
    avg = sum(t.runs_us) / len(t.runs_us)
    std = (sum((x - avg) ** 2 for x in t.runs_us) / len(t.runs_us)) ** 0.5
    (tmp_path / "r.csv").write_text(
        "bundle_id,key,unit,count,avg,std,min,max\n"
        f"{bid},{t.key},ms,{len(t.runs_us)},{avg / 1e3},{std / 1e3},{min(t.runs_us) / 1e3},{max(t.runs_us) / 1e3}\n"
    )
    store = tmp_path / "store.sqlite"
    p = cli("ingest", "--device", "iphonex", str(tmp_path / "r.json"), str(tmp_path / "r.csv"), "--store",
            str(store), "-o", str(tmp_path / "lut.json"), "--json", check=True)
    rep = json.loads(p.stdout)
    assert sorted(rep["added"]) == sorted(KEYS[:2])
    assert rep["unknown"] == ["ir-in16x16x8-out8-k7-e6-g1-s1"]
    lut = load(tmp_path / "lut.json")
    e0 = lut[timings[0].key]  # from raw samples: real percentiles
    xs = sorted(x / 1e3 for x in timings[0].runs_us)
    assert e0.stats.count == len(xs) and e0.stats.min == pytest.approx(xs[0]) and e0.stats.max == pytest.approx(xs[-1])
    assert lut[t.key].stats.mean == pytest.approx(avg / 1e3)
    assert lut.header["device_info"]["product_type"] == "iPhone10,6"
    p = cli("ingest", "--device", "iphonex", str(tmp_path / "r.csv"), "--store", str(store), "-o",
            str(tmp_path / "lut.json"), "--json", check=True)
    assert json.loads(p.stdout)["added"] == []


# A whole space small enough to bundle in seconds (FBNet's 109 TFLite exports took minutes of CI): a user's space
# file, with SE, hswish, a zero op and a depth choice, so the bundle carries its definition too.
SMALL_SPACE = """\
name: ios_small
resolution: {default: 32, min: 16}
num_classes: 10
stem:
  - {op: conv, out: 8, kernel: 3, stride: 2}
stages:
  - {out: 8, layers: 1, stride: 1, candidates: [ds_k3]}
  - {out: 16, layers: 2, stride: 2, candidates: [ir_k3_e3, ir_k5_e6_se0.25_hs, zero], depth: [1, 2]}
head_channels: 32
head:
  - {op: conv, out: head, kernel: 1}
  - {op: logits, out: classes}
archs:
  small: "ds_k3 | ir_k3_e3 zero"
"""


def test_whole_space_bundle(tmp_path: Path, artifact_cache: Path):
    """A whole space once (every op) plus its calibration networks: every key of the space gets a model and
    parameters; once the app's results are in, ingest writes a complete LUT and fits its calibration."""
    from latency_lut.spaces import get_space

    (tmp_path / "small.yaml").write_text(SMALL_SPACE)
    space = get_space(tmp_path / "small.yaml")
    env = cli_env(FBNET_LUT_CACHE=str(artifact_cache), FBNET_LUT_STORE=str(tmp_path / "store.sqlite"))
    p = run_cli("build", "--device", "iphonex", "--space", "small.yaml", "--jobs", "2", "--bundle", "b", "--json",
                "--calibration-models", "2", *FAST, cwd=tmp_path, env=env, check=True, timeout=1800)
    summary = json.loads(p.stdout)
    keys = [s.key for s in space.unique_specs()]
    assert len(keys) >= 8
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    nets = list(manifest["networks"])  # the named arch and two sampled architectures
    assert len(nets) == 3 and all(k.startswith(f"net-{space.id}-") for k in nets)
    assert manifest["whole_space"] is True and [m["key"] for m in manifest["models"]] == keys + nets
    assert summary["models"] == len(keys) + 3 and summary["calibration_networks"] == 3
    assert summary["status"] == "waiting_for_results"
    assert all((tmp_path / "b" / m["params"]).is_file() for m in manifest["models"])

    (tmp_path / "small.yaml").unlink()  # the bundle and the LUT carry the space; ingest needs no file
    (tmp_path / "app.log").write_text(console_log(time_bundle(tmp_path / "b")))
    rep = json.loads(run_cli("ingest", "--device", "iphonex", "--bundle", "b", "app.log", "-o", "lut.json",
                             "--json", cwd=tmp_path, env=env, check=True).stdout)
    assert rep["complete"] and rep["missing"] == [] and rep["calibration"].startswith("fitted on 3 networks")
    lut = load(tmp_path / "lut.json")
    assert sorted(lut.entries) == sorted(keys) and lut.header["space"]["name"] == "ios_small"
    cal = lut.header["calibration"]
    assert cal["device"] == "iphonex" and sorted(cal["fitted_on"]) == sorted(nets)
    assert cal["source"]["by"] == "ingest" and cal["cross_validated"]["calibrated_cv"]["n"] == 3


def test_int8_bundle_round_trip_and_fp16_refused(tmp_path: Path, artifact_cache: Path):
    """--dtype int8 for an iPhone: full-integer models in the bundle, the configuration (settings) int8, and ingest
    writes an int8 LUT under its own default name; fp16 is refused naming the device (the app has no fp16 switch)."""
    from latency_lut.quantize import tflite_ops

    env = cli_env(FBNET_LUT_CACHE=str(artifact_cache), FBNET_LUT_STORE=str(tmp_path / "store.sqlite"))
    s = json.loads(run_cli("build", "--device", "iphonex", *SPACE, *FAST, "--only", KEYS[1], "--dtype", "int8",
                           "--json", cwd=tmp_path, env=env, check=True).stdout)
    bundle = tmp_path / s["bundle"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["settings"]["dtype"] == "int8" and manifest["settings"]["exporter"]["io"] == "int8"
    ops = tflite_ops(bundle / manifest["models"][0]["file"])
    assert {dt[0] for op, dt in ops if op.endswith("CONV_2D")} == {"int8"}, ops
    (tmp_path / "run.log").write_text(console_log(time_bundle(bundle), device=DEVICE))
    rep = json.loads(run_cli("ingest", "--device", "iphonex", "--bundle", str(bundle), "run.log", "--json",
                             cwd=tmp_path, env=env, check=True).stdout)
    assert rep["added"] == [KEYS[1]] and rep["lut"].endswith("iphonex-litert-32-w0.25-int8.json"), rep["lut"]
    assert load(tmp_path / rep["lut"]).header["dtype"] == "int8"
    bad = run_cli("build", "--device", "iphonex", *SPACE, "--only", KEYS[1], "--dtype", "fp16", cwd=tmp_path,
                  env=env)
    assert bad.returncode == 2 and "device 'iphonex' (ios) cannot run dtype 'fp16'" in bad.stderr, bad.stderr


def test_block_that_fails_to_quantize_is_named_and_left_out(tmp_path: Path, artifact_cache: Path, monkeypatch,
                                                             capsys):
    """One block of a whole space fails to quantize: the iPhone bundle holds the others and names it with the
    converter's reason, and the LUT that ingest writes from the app's log is incomplete for want of it."""
    from latency_lut.spaces import get_space

    (tmp_path / "tiny.yaml").write_text(TINY_SPACE)
    keys = [s.key for s in get_space(tmp_path / "tiny.yaml").unique_specs()]
    reject_int8_block(monkeypatch, reason="unsupported op: QUANTIZE of HARD_SWISH")
    args = ["build", "--device", "iphonex", "--space", "tiny.yaml", "--dtype", "int8", *FAST, "--no-calibrate",
            "--bundle", "b"]
    rc, out, err = main_in(tmp_path, monkeypatch, capsys, *args, "--json")
    assert rc == 0, err
    summary = json.loads(out)
    assert list(summary["failed"]) == [REJECTED] and "unsupported op: QUANTIZE of HARD_SWISH" in summary["failed"][
        REJECTED] and summary["models"] == len(keys) - 1 and summary["status"] == "waiting_for_results"
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert [m["key"] for m in manifest["models"]] == [k for k in keys if k != REJECTED] and manifest["whole_space"]
    assert manifest["failed"] == summary["failed"] and not (tmp_path / "b" / "models" / REJECTED).exists()
    rc, out, _ = main_in(tmp_path, monkeypatch, capsys, *args)  # the terminal: one line per failed block
    lines = [x for x in out.splitlines() if x.startswith("failed ")]
    assert rc == 0 and len(lines) == 1 and re.match(rf"failed {REJECTED}\s+litert-torch conversion failed: "
                                                    r"unsupported op: QUANTIZE of HARD_SWISH", lines[0]), out

    (tmp_path / "app.log").write_text(console_log(time_bundle(tmp_path / "b"), device=DEVICE))
    env = cli_env(FBNET_LUT_CACHE=str(artifact_cache), FBNET_LUT_STORE=str(tmp_path / "store.sqlite"))
    p = run_cli("ingest", "--device", "iphonex", "--bundle", "b", "app.log", "-o", "lut.json", cwd=tmp_path, env=env,
                check=True)
    assert re.search(rf"^not bundled {REJECTED}\s+litert-torch conversion failed: unsupported op", p.stdout, re.M)
    assert "the LUT stays incomplete without them" in p.stdout and "built with --only" not in p.stdout
    rep = json.loads(run_cli("ingest", "--device", "iphonex", "--bundle", "b", "app.log", "-o", "lut.json",
                             "--json", cwd=tmp_path, env=env, check=True).stdout)
    assert rep["missing"] == [] and rep["export_failed"] == summary["failed"] and rep["complete"] is False
    lut = load(tmp_path / "lut.json")
    assert sorted(lut.entries) == sorted(k for k in keys if k != REJECTED)
    assert lut.header["complete"] is False and lut.header["dtype"] == "int8"
