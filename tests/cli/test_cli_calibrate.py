"""build calibrates by default (a closing whole-network pass); show and predict say when a LUT is not calibrated."""

import json
import math
import sqlite3

import pytest
from conftest import FAST

from latency_lut.lut import load

SMALL = ["--resolution", "32", "--width", "0.25"]
# The functional protocol without the flags that switch the pass off; a generous budget, so the tiny space
# (whose networks cost more than its ops) still gets its few models.
PROTOCOL = [a for a in FAST if a != "--no-calibrate"]
WATCHED = [a for a in PROTOCOL if a != "--no-drift-guard"]  # the default: the drift guard watches the pass too
CALIBRATE = ["--calibration-budget", "100", "--calibration-models", "4", "--calibration-max-noise", "10"]


def _net_rows(store):
    with sqlite3.connect(store) as db:
        return db.execute("SELECT key, json_extract(extra, '$.round') FROM measurements WHERE key LIKE 'net-%' "
                          "AND accepted = 1").fetchall()


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, artifact_cache):
    from conftest import cli_env, run_cli

    d = tmp_path_factory.mktemp("calibrated")
    env = cli_env(FBNET_LUT_CACHE=str(artifact_cache), FBNET_LUT_STORE=str(d / "store.sqlite"))
    out = run_cli("build", *SMALL, *WATCHED, *CALIBRATE, "-o", "lut.json", "-q", "--json", cwd=d, env=env,
                  check=True)
    return d, env, json.loads(out.stdout)


def test_build_ends_with_a_calibration_pass(calibrated):
    d, env, summary = calibrated
    c = summary["calibration"]
    assert c["status"] == "fitted" and c["models"] == 7 and c["reused"] == 0 and c["folds"] == 5
    assert 0 <= c["cv_within_10"] <= 1 and c["cv_rmspe"] > 0
    cal = load(d / "lut.json").header["calibration"]
    assert cal["device"] == "local" and len(cal["fitted_on"]) == 7 and cal["source"]["by"] == "build"
    # The build's drift guard observed its reference between the networks (after every 4 models and at each
    # round's end), and the networks were fitted on the machine state of the ops.
    assert cal["source"]["observations"] >= 3 * 2 and 0.3 < cal["source"]["host_factor"] < 3
    cv = cal["cross_validated"]
    assert cv["calibrated_cv"]["n"] == 7 and cv["plain_sum"]["n"] == 7 and cv["noise"]["median"] >= 0
    assert all(math.isfinite(v) for v in cal["coef"].values())
    rows = _net_rows(d / "store.sqlite")  # each network's three rounds, stored as taken
    assert len(rows) == 21 and {r for _, r in rows} == {0, 1, 2}


def test_a_rerun_reuses_the_pass_and_measures_nothing(calibrated):
    from conftest import run_cli

    d, env, first = calibrated
    before = _net_rows(d / "store.sqlite")
    out = json.loads(run_cli("build", *SMALL, *WATCHED, *CALIBRATE, "-o", "lut2.json", "-q", "--json", cwd=d,
                             env=env, check=True).stdout)
    assert out["measured"] == 0 and out["calibration"]["reused"] == 7 == out["calibration"]["models"]
    assert _net_rows(d / "store.sqlite") == before
    assert load(d / "lut2.json").header["calibration"]["coef"] == load(d / "lut.json").header["calibration"]["coef"]


def test_show_and_predict_say_whether_a_lut_is_calibrated(calibrated, cli, tmp_path):
    from conftest import run_cli

    d, env, _ = calibrated
    shown = run_cli("show", "lut.json", "--top", "1", cwd=d, env=env, check=True).stdout
    assert "calibrated on 7 whole networks of local" in shown and "UNCALIBRATED" not in shown
    assert "split-half reliability" in shown and "drift guard" in shown

    plain = cli("build", *SMALL, *FAST, "-o", "plain.json", "-q", "--json", check=True)
    assert "skipped (--no-calibrate)" in json.loads(plain.stdout)["calibration"]["status"]
    assert "UNCALIBRATED" in cli("show", "plain.json", "--top", "1", check=True).stdout
    pred = cli("predict", "--lut", "plain.json", "-a", "fbnet_a", check=True).stdout
    assert "UNCALIBRATED: predictions are the plain sum" in pred
    js = json.loads(cli("predict", "--lut", "plain.json", "-a", "fbnet_a", "--json", check=True).stdout)
    assert js["calibrated"] is False


def test_a_calibration_from_another_device_is_an_error(calibrated, tmp_path):
    from conftest import run_cli

    d, env, _ = calibrated
    doc = json.loads((d / "lut.json").read_text())
    doc["header"]["calibration"]["device"] = "pixel4"
    (tmp_path / "mixed.json").write_text(json.dumps(doc))
    proc = run_cli("predict", "--lut", str(tmp_path / "mixed.json"), "-a", "fbnet_a", cwd=tmp_path, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "device 'pixel4'" in proc.stderr and "device 'local'" in proc.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--rounds", "0"], "--rounds"),
    (["--drift-threshold", "-0.1"], "--drift-threshold"),
    (["--drift-threshold", "nan"], "--drift-threshold"),
    (["--drift-every", "0"], "--drift-every"),
    (["--noise-threshold", "nan"], "--noise-threshold"),
    (["--calibration-budget", "0"], "--calibration-budget"),
])
def test_bad_round_and_threshold_values_fail_before_measuring(cli, tmp_path, args, fragment):
    proc = cli("build", *SMALL, *args, "-o", "x.json")
    assert proc.returncode == 2 and fragment in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 3  # click's usage line, blank, the error
    assert not (tmp_path / "store.sqlite").exists() and not (tmp_path / "x.json").exists()
