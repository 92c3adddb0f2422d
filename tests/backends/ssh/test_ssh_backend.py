"""The SSH backend against a real OpenSSH server on loopback: measurement, reuse, board state, faults, bad input."""
# ruff: noqa: F811  (pytest fixtures imported from ssh_fixtures are test arguments of the same name)

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from ssh_fixtures import QUICK, board_dir, make_backend, make_sysfs, sshd, tflite_python, tiny_models  # noqa: F401

from latency_lut.backends.ssh.backend import RUNNER_NAME, runner_source
from latency_lut.checksums import sha256_file
from latency_lut.errors import DeviceError
from latency_lut.measure import Protocol


@pytest.mark.parametrize("runtime, fmt, module", [("onnxruntime", "onnx", "onnxruntime"),
                                                  ("litert", "tflite", "ai_edge_litert")])
def test_measures_on_the_board_and_describes_it(sshd, board_dir, make_backend, tiny_models, runtime, fmt, module):
    backend = make_backend(runtime)
    settings = backend.settings()
    assert settings["runtime"] == runtime and settings["runtime_version"].startswith(module + " ")
    assert settings["cpu_mask"] == "1" and settings["threads"] == 1
    info = backend.device_info()
    assert info["kernel"] == os.uname().release and info["python"] == ".".join(map(str, os.sys.version_info[:3]))
    assert info["cpu_count"] >= 1 and info["cpu_model"] and info["affinity"] == [0]  # pinned by cpu_mask "1"
    assert info["runtime_module"] == module and info["transport"] == "ssh board"
    assert backend.fingerprint().startswith("ssh|")

    for spec, path in tiny_models[fmt].items():
        r = backend.measure(spec, path, QUICK)
        assert len(r.samples_ms) >= 3 and all(x > 0 for x in r.samples_ms)
        assert r.extra["reconnects"] == 0 and r.extra["load_seconds"] >= 0
    # The runner went over once and is verified by checksum; each model once, stored under its checksum.
    assert backend.pushed[0] == RUNNER_NAME and backend.pushed.count(RUNNER_NAME) == 1
    assert sha256_file(board_dir / RUNNER_NAME) == sha256_file(runner_source())
    models = sorted((board_dir / "models").iterdir())
    assert len(models) == 3 == len(backend.pushed) - 1
    assert all(sha256_file(m).startswith(m.stem) for m in models)


def test_runner_and_models_on_the_board_are_reused_unless_corrupted(sshd, board_dir, make_backend, tiny_models):
    spec, path = next(iter(tiny_models["onnx"].items()))
    first = make_backend()
    first.measure(spec, path, QUICK)
    first.close()
    second = make_backend()
    second.measure(spec, path, QUICK)
    assert second.pushed == []  # neither the runner nor the model went over the wire again
    second.close()

    (board_dir / RUNNER_NAME).write_text("# damaged\n")
    model = next((board_dir / "models").iterdir())
    model.write_bytes(b"garbage")
    third = make_backend()
    third.measure(spec, path, QUICK)
    assert third.pushed == [RUNNER_NAME, model.name]
    assert sha256_file(model).startswith(model.stem)


def test_keep_files_false_cleans_the_board(sshd, board_dir, make_backend, tiny_models):
    backend = make_backend(keep_files=False)
    for spec, path in tiny_models["onnx"].items():
        backend.measure(spec, path, QUICK)
    assert len(list((board_dir / "models").iterdir())) == 3
    backend.close()
    assert not board_dir.exists()


def test_tflite_runtime_board(sshd, board_dir, make_backend, tiny_models, tflite_python):
    """The Pi users' runtime: tflite-runtime 2.14 in a Python that has nothing else."""
    backend = make_backend("litert", python=str(tflite_python))
    assert backend.runtime_version() == "tflite_runtime 2.14.0"
    assert backend.device_info()["numpy"].startswith("1.")
    for spec, path in tiny_models["tflite"].items():
        assert len(backend.measure(spec, path, QUICK).samples_ms) >= 3


def test_governor_set_for_the_build_and_restored_even_after_a_kill(sshd, board_dir, make_backend, tiny_models,
                                                                   tmp_path):
    sysfs = make_sysfs(tmp_path / "sys")
    sshd.write_configs(set_env={"FBNET_LUT_SYSFS": str(sysfs)})  # the runner reads this board's /sys
    governors = [sysfs / f"devices/system/cpu/cpu{i}/cpufreq/scaling_governor" for i in (0, 1)]
    spec, path = next(iter(tiny_models["onnx"].items()))

    backend = make_backend(governor="performance", thermal_zones=["cpu-*"], cooldown_celsius=45,
                           cooldown_poll_seconds=0.1, cooldown_timeout_seconds=1)
    r = backend.measure(spec, path, QUICK)
    assert [g.read_text().strip() for g in governors] == ["performance"] * 2
    info = backend.device_info()
    assert info["governor"] == ["performance"] and info["governor_before"] == ["schedutil"]
    assert info["cpu_max_freq_khz"] == {"cpu0": 1800000, "cpu1": 1800000}
    assert r.extra["temperature_c"] == 38.0 and list(r.extra["zones_c"]) == ["thermal_zone0:cpu-thermal"]
    backend.close()
    assert [g.read_text().strip() for g in governors] == ["schedutil"] * 2

    # A runner killed outright (SIGKILL: no chance to restore) leaves its saved state; the next runner restores it.
    killed = make_backend(governor="performance", reconnect_attempts=0)
    killed.measure(spec, path, QUICK)
    sshd.drop_connections()
    assert governors[0].read_text().strip() == "performance" and (board_dir / "governor.saved").exists()
    after = make_backend()  # no governor asked for: only the restore
    after.measure(spec, path, QUICK)
    assert [g.read_text().strip() for g in governors] == ["schedutil"] * 2
    assert not (board_dir / "governor.saved").exists()

    with pytest.raises(DeviceError, match=r"cannot set governor 'turbo': governor 'turbo' is not offered by this "
                                          r"board \(it has: ondemand performance powersave schedutil\); .*remove "
                                          r"'governor' from board.yaml"):
        make_backend(governor="turbo").runtime_version()
    assert [g.read_text().strip() for g in governors] == ["schedutil"] * 2

    # Too hot for longer than the timeout: the build stops with the fix.
    (sysfs / "class/thermal/thermal_zone0/temp").write_text("70000\n")
    with pytest.raises(DeviceError, match=r"the board stayed above 45 C \(70.0 C\).*raise cooldown_celsius"):
        backend = make_backend(thermal_zones=["cpu-*"], cooldown_celsius=45, cooldown_poll_seconds=0.1,
                               cooldown_timeout_seconds=0.3)
        backend.measure(spec, path, QUICK)


def test_dropped_connection_is_retried_and_the_op_measured_again(sshd, make_backend, tiny_models):
    items = list(tiny_models["onnx"].items())
    backend = make_backend()
    backend.measure(*items[0], QUICK)
    assert sshd.drop_connections() >= 1  # between two ops
    r = backend.measure(*items[1], QUICK)
    assert r.extra["reconnects"] == 1 and len(r.samples_ms) >= 3

    # In the middle of an op: the runner dies with the connection, the op is measured again from the start.
    slow = Protocol(warmup=1, runs=3, min_seconds=1.0, max_runs=10**9, retries=0)
    timer = threading.Timer(0.4, sshd.drop_connections)
    timer.start()
    t0 = time.monotonic()
    r = backend.measure(*items[2], slow)
    assert r.extra["reconnects"] == 2 and time.monotonic() - t0 >= 1.4
    assert len(r.samples_ms) >= 3 and sum(r.samples_ms) <= 1.2 * 1000 + 50


def test_server_gone_stops_with_the_fix(sshd, make_backend, tiny_models):
    spec, path = next(iter(tiny_models["onnx"].items()))
    backend = make_backend()
    backend.measure(spec, path, QUICK)
    sshd.stop()
    with pytest.raises(DeviceError, match=r"lost the connection to the board board during the benchmark of .*"
                                          r"2 reconnect attempt\(s\) failed.*resumes where it stopped"):
        backend.measure(spec, path, QUICK)
    assert backend.reconnects == 2


def test_a_board_without_the_runtime(sshd, make_backend, tflite_python):
    with pytest.raises(DeviceError, match=r"cannot import onnxruntime: install it there \(.*/python -m pip install "
                                          r"onnxruntime\) or set 'python' in board.yaml"):
        make_backend("onnxruntime", python=str(tflite_python)).runtime_version()
    with pytest.raises(DeviceError, match=r"cannot import ai_edge_litert.*pip install ai-edge-litert"):
        make_backend("litert", python=str(tflite_python), litert_module="ai_edge_litert").runtime_version()


@pytest.mark.parametrize("python, message", [
    ("/opt/no-such/python3", r"has no Python at '/opt/no-such/python3' \(.*No such file.*\): install Python 3"),
    ("/bin/sh", r"'/bin/sh' on the board .* is not a working Python 3 \(.*\): set 'python' to a Python 3.7\+"),
    ("/bin/true", r"'/bin/true' on the board .* is not a working Python 3 \(exit 0\)"),
])
def test_wrong_python(sshd, make_backend, python, message):
    with pytest.raises(DeviceError, match=message):
        make_backend(python=python).runtime_version()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting the small tmpfs that plays a full disk needs root")
def test_a_full_disk(sshd, board_dir, make_backend, tiny_models, tmp_path):
    import subprocess

    board_dir.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(board_dir)], check=True)
    try:
        filler = board_dir / "filler"

        def fill() -> None:
            with open(filler, "ab", buffering=0) as f:
                try:
                    while True:
                        f.write(b"\0" * 4096)
                except OSError:
                    pass

        fill()
        with pytest.raises(DeviceError, match=r"no space left in .*fbnet-lut.*: free some space there \(df -h\) "
                                              r"or set 'remote_dir' in board.yaml"):
            make_backend().runtime_version()
        assert not (board_dir / RUNNER_NAME).exists() and not (board_dir / ".runner.py.part").exists()

        filler.unlink()
        backend = make_backend()
        backend.runtime_version()  # the runner fits
        fill()  # then the disk fills up before the first model
        spec, path = next(iter(tiny_models["onnx"].items()))
        with pytest.raises(DeviceError, match=r"no space left in .*: free some space there"):
            backend.measure(spec, path, QUICK)
        assert not list((board_dir / "models").iterdir())  # no partial model left behind
        backend.close()
    finally:
        subprocess.run(["umount", "-l", str(board_dir)], check=False)


def test_login_problems_name_the_fix(sshd, make_backend, tmp_path):
    (sshd.dir / "authorized_keys").write_text("")
    with pytest.raises(DeviceError, match=r"refused the login \(.*Permission denied.*\): set up key login"):
        make_backend().runtime_version()
    (sshd.dir / "authorized_keys").write_text((sshd.dir / "client_key.pub").read_text())
    (sshd.dir / "known_hosts").write_text("")
    with pytest.raises(DeviceError, match=r"host key of board is not in known_hosts.*connect once with `ssh board`"):
        make_backend().runtime_version()


def test_unreachable_board_is_retried_then_stops(sshd, make_backend):
    sshd.stop()
    backend = make_backend(reconnect_attempts=1)
    with pytest.raises(DeviceError, match=r"lost the connection to the board board during connecting.*Connection "
                                          r"refused.*1 reconnect attempt"):
        backend.runtime_version()


def test_bad_cpu_mask_on_the_board(sshd, make_backend):
    with pytest.raises(DeviceError, match=r"cpu_mask '8000000000000000' in board.yaml is unusable: cannot pin to CPUs "
                                          r"\[63\]"):
        make_backend(cpu_mask="8000000000000000").runtime_version()


def test_shell_arguments_are_quoted(sshd, make_backend, tiny_models, tmp_path, monkeypatch):
    """Paths full of shell syntax reach the board as plain words: nothing runs, the folders exist as named."""
    canary = Path.home() / "fbnet-lut-test-pwned"  # a remote command runs in the login's home
    canary.unlink(missing_ok=True)
    evil = tmp_path / f"b d $(touch {canary.name}) `touch {canary.name}` ; touch {canary.name} ' \" && x"
    python_link = tmp_path / f"py $(touch {canary.name}); '"
    python_link.symlink_to(os.sys.executable)
    backend = make_backend(remote_dir=str(evil / "fbnet-lut"), python=str(python_link), keep_files=False)
    spec, path = next(iter(tiny_models["onnx"].items()))
    assert len(backend.measure(spec, path, QUICK).samples_ms) >= 3
    assert (evil / "fbnet-lut" / RUNNER_NAME).exists() and not canary.exists()
    backend.close()
    assert not (evil / "fbnet-lut").exists() and not canary.exists()
    # The runner's own requests are JSON, never shell: a model name cannot leave its folder.
    backend = make_backend()
    backend.runtime_version()
    reply = backend._session.call({"cmd": "have", "models": [["../../x", "0"]]}, 10)
    assert reply["error"] == "bad_request"
    json.dumps(reply)


def test_runner_timing_loop_matches_the_host_protocol():
    """board_runner.time_calls is measure.time_callable restated for the board (it cannot import fbnet-lut)."""
    import importlib.util

    from latency_lut.measure import time_callable

    spec = importlib.util.spec_from_file_location("board_runner_copy", runner_source())
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for p in (Protocol(warmup=2, runs=7, min_seconds=0), Protocol(warmup=0, runs=5, min_seconds=0, max_runs=4),
              Protocol(warmup=1, runs=3, min_seconds=0.05)):
        calls = {"host": 0, "board": 0}

        def fn(side, calls=calls):
            calls[side] += 1
            time.sleep(0.002)

        host = time_callable(lambda: fn("host"), p)
        board = mod.time_calls(lambda: fn("board"), {**p.to_dict(), "clock": p.clock})
        if p.min_seconds:  # both ran for the minimum time (the counts differ with the host's load)
            assert sum(host) >= 1000 * p.min_seconds * 0.9 and sum(board) >= 1000 * p.min_seconds * 0.9
        else:
            assert len(host) == len(board) == min(p.runs, p.max_runs)
        assert calls["host"] - len(host) == calls["board"] - len(board) == p.warmup


def test_a_runner_that_crashes_on_start(sshd, make_backend, tmp_path):
    """A board whose numpy is broken (here: a wrapper interpreter putting a failing numpy first on the path)."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "numpy.py").write_text("raise RuntimeError('illegal instruction in numpy')\n")
    wrapper = tmp_path / "python-wrapper"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={broken} exec {os.sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    with pytest.raises(DeviceError, match=r"the runner did not start on the board board \(exit 1: .*RuntimeError: "
                                          r"illegal instruction in numpy\); check that 'python' in board.yaml"):
        make_backend(python=str(wrapper)).runtime_version()
