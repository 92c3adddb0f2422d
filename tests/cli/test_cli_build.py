"""The CLI end to end, as real subprocesses: build, show, predict, resume after a kill."""

import json
import signal
import sqlite3
import subprocess
import sys
import time

from conftest import FAST, accepted_ops, cli_env

from latency_lut.lut import load

SMALL = ["--resolution", "32", "--width", "0.25"]


def test_build_show_predict(cli, tmp_path):
    out = cli("build", *SMALL, *FAST, "-q", "--json", "--csv", "lut.csv", check=True)
    summary = json.loads(out.stdout)
    lut_path = tmp_path / "profiles" / "local-onnxruntime-32-w0.25.json"
    assert summary["lut"] == str(lut_path.relative_to(tmp_path))
    assert summary["measured"] == summary["entries"] == 109 and summary["complete"]
    lut = load(lut_path)
    assert lut.header["space"]["id"] == "fbnet-32-w0.25" and len(lut) == 109
    assert (tmp_path / "lut.csv").read_text().count("\n") == 110

    again = json.loads(cli("build", *SMALL, *FAST, "-q", "--json", check=True).stdout)
    assert again["measured"] == 0 and again["reused"] == 109

    shown = cli("show", str(lut_path), "--sort", "median", "--top", "3", check=True).stdout
    assert "fbnet-32-w0.25" in shown and "109 (complete)" in shown

    pred = json.loads(cli("predict", "--lut", str(lut_path), "-a", "fbnet_a", "-a", "fbnet_c", "--json",
                          check=True).stdout)
    a, c = pred["predictions"]
    assert [op["label"] for op in a["ops"]][:3] == ["stem", "layer1", "layer2"] and len(a["ops"]) == 26
    assert a["ops"][1]["choice"] == "skip" and a["ops"][1]["ms"] == 0.0  # FBNet-A layer 1: identity
    assert abs(a["total_ms"] - sum(op["ms"] for op in a["ops"])) < 1e-9
    assert all(op["ms"] == (lut[op["key"]].stats.median if op["key"] in lut else 0.0) for op in c["ops"])
    assert all(op["key"] in lut for op in c["ops"] if op["choice"] != "skip")
    table = cli("predict", "--lut", str(lut_path), "-a", "fbnet_b", check=True).stdout
    assert "layer22" in table and "fbnet_b" in table


def test_killed_build_resumes_mid_round(tmp_path, artifact_cache):
    store = tmp_path / "store.sqlite"
    env = cli_env(FBNET_LUT_CACHE=str(artifact_cache), FBNET_LUT_STORE=str(store))
    args = [sys.executable, "-m", "latency_lut", "build", *SMALL, "--warmup", "1", "--runs", "3",
            "--min-seconds", "0.02", "--retries", "0", "--no-drift-guard", "--no-calibrate", "--extra-rounds", "0",
            "-q", "-o", "lut.json"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    deadline = time.time() + 300
    while accepted_ops(store) < 120 and proc.poll() is None and time.time() < deadline:  # inside round 2 of 3
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the build finished before it could be killed"
    done = accepted_ops(store)
    assert 120 <= done < 2 * 109
    assert not (tmp_path / "lut.json").exists()

    res = subprocess.run(args[:-3] + ["-q", "--json", "-o", "lut.json"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["measured"] == 109 and summary["reused"] == 0 and summary["complete"] and summary["rounds"] == 3
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT key, json_extract(extra, '$.round'), COUNT(*) FROM measurements "
                          "WHERE accepted = 1 GROUP BY key, json_extract(extra, '$.round')").fetchall()
        total = db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]
    # Every op has each of its 3 rounds exactly once: nothing lost, nothing measured twice.
    assert len(rows) == 3 * 109 and {r for _, r, _ in rows} == {0, 1, 2} and all(n == 1 for *_, n in rows)
    assert total == 3 * 109


def test_ctrl_c_is_not_a_traceback(tmp_path, artifact_cache):
    store = tmp_path / "s.sqlite"
    env = cli_env(FBNET_LUT_CACHE=str(artifact_cache), FBNET_LUT_STORE=str(store))
    proc = subprocess.Popen([sys.executable, "-m", "latency_lut", "build", *SMALL, "--min-seconds", "0.2",
                             "-q", "-o", "lut.json"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            # A test run started in the background by a shell inherits SIGINT ignored, and a
                            # Python started so never raises KeyboardInterrupt: give the build a terminal's default.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while accepted_ops(store) < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the build ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "rerun the same command to resume" in err and "Traceback" not in err
