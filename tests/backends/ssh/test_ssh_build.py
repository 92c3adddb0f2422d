"""Builds on an SSH board through the real loopback sshd: in-process with the server stopped mid-build, and the CLI
end to end (killed, resumed, validated)."""
# ruff: noqa: F811  (pytest fixtures imported from ssh_fixtures are test arguments of the same name)

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from conftest import accepted_ops, run_cli
from ssh_fixtures import BOARD, QUICK, board_dir, board_doc, env_for_cli, make_backend, sshd  # noqa: F401

from latency_lut.build import build_lut
from latency_lut.devices import parse_descriptor
from latency_lut.errors import DeviceError
from latency_lut.lut import load
from latency_lut.spaces import get_space
from latency_lut.store import Store

SPACE = ["--resolution", "32", "--width", "0.25"]
FAST = ["--warmup", "1", "--runs", "3", "--min-seconds", "0", "--retries", "0", "--rounds", "1", "--no-drift-guard",
        "--no-calibrate"]


class StopServerAfter:
    """Build progress that stops the board's sshd once ``n`` ops are committed."""

    def __init__(self, server, n: int) -> None:
        self.server, self.n, self.done, self.phase = server, n, 0, ""

    def start(self, phase: str, total: int) -> None:
        self.phase = phase

    def finish(self) -> None: ...

    def advance(self, key: str) -> None:
        self.done += self.phase.startswith("measure")
        if self.done == self.n:
            self.server.stop()


def test_server_stopped_mid_build_leaves_the_store_intact_and_a_rerun_resumes(sshd, make_backend, tmp_path,
                                                                               artifact_cache):
    space = get_space("fbnet", 32, 0.25)
    specs = space.unique_specs()[:6]
    device = parse_descriptor(board_doc(reconnect_attempts=1), "board.yaml")
    with Store(tmp_path / "store.sqlite") as store:
        backend = make_backend(reconnect_attempts=1)
        with pytest.raises(DeviceError, match="lost the connection.*rerun the same command"):
            build_lut(space, device, backend, store, QUICK, specs=specs, progress=StopServerAfter(sshd, 2),
                      rounds=1)
        backend.close()
    with Store(tmp_path / "store.sqlite") as store:  # reopened as a rerun would: the two finished ops are there
        sshd.start()
        backend = make_backend()
        res = build_lut(space, device, backend, store, QUICK, specs=specs, rounds=1)
    assert (res.reused, res.measured) == (2, 4) and len(res.lut) == 6
    h = res.lut.header
    assert h["device_kind"] == "ssh" and h["runtime_version"].startswith("onnxruntime ")
    info = h["device_info"]
    assert {"model", "cpu_model", "cpu_count", "kernel", "python", "runtime_version", "governor",
            "cpu_max_freq_khz"} <= set(info)


def test_cli_build_killed_resumed_then_validated(sshd, board_dir, tmp_path, artifact_cache):
    store = tmp_path / "store.sqlite"
    env = env_for_cli(sshd, board_dir, FBNET_LUT_CACHE=str(artifact_cache), FBNET_LUT_STORE=str(store))
    args = ["build", "--device", str(BOARD), *SPACE, *FAST, "-q", "-o", "lut.json"]
    proc = subprocess.Popen([sys.executable, "-m", "latency_lut", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while accepted_ops(store) < 5 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the build finished before it could be killed"
    done = accepted_ops(store)
    assert 5 <= done < 109 and not (tmp_path / "lut.json").exists()

    res = run_cli(*args, "--json", cwd=tmp_path, env=env, check=True)
    summary = json.loads(res.stdout)
    assert summary["reused"] == done and summary["measured"] == 109 - done and summary["complete"]
    with sqlite3.connect(store) as db:
        per_key = db.execute("SELECT key, COUNT(*) FROM measurements WHERE accepted = 1 GROUP BY key").fetchall()
    assert len(per_key) == 109 and all(n == 1 for _, n in per_key)  # nothing measured twice
    lut = load(tmp_path / "lut.json")
    assert lut.header["device"] == "loopback-board" and lut.header["device_kind"] == "ssh"
    assert lut.header["settings"]["cpu_mask"] == "1" and lut.header["device_info"]["transport"] == "ssh board"

    again = json.loads(run_cli(*args, "--json", cwd=tmp_path, env=env, check=True).stdout)
    assert again["measured"] == 0 and again["reused"] == 109

    # Whole models on the board, and a calibration fitted on them, as on any device kind.
    val = run_cli("validate", "--device", str(BOARD), "--lut", "lut.json", "--n", "4", "--no-named", "--rounds",
                  "2", "--calibrate", "--folds", "2", "--json", "-q", cwd=tmp_path, env=env, check=True)
    report = json.loads(val.stdout)
    assert len(report["rows"]) == 4 and all(r["measured_ms"] > 0 for r in report["rows"])
    assert report["calibration"] is not None and load(tmp_path / "lut.json").header["calibration"] is not None


def test_cli_bad_board_is_one_line(sshd, board_dir, tmp_path, artifact_cache):
    env = env_for_cli(sshd, board_dir, FBNET_LUT_CACHE=str(artifact_cache),
                      FBNET_LUT_STORE=str(tmp_path / "store.sqlite"), FBNET_LUT_TEST_PYTHON="/opt/no/python3")
    res = run_cli("build", "--device", str(BOARD), *SPACE, *FAST, "-q", cwd=tmp_path, env=env)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith("Error: the board board") and "set 'python' to its path" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
