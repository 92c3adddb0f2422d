"""The Android backend against the loopback ADB daemon: session, measurement, thermal guard, robustness, bad input."""
# ruff: noqa: F811  (pytest fixtures imported from android_fixtures are test arguments of the same name)

from __future__ import annotations

import json
import os
import shlex
import stat
import threading
import time
from pathlib import Path

import pytest
from android_fixtures import QUICK, install_standin, make_backend, phone, phone_home, tiny_models  # noqa: F401

from latency_lut.backends.android.adb import AdbSession, Target, quote
from latency_lut.errors import DeviceError


def _first(models: dict):
    spec = next(iter(models))
    return spec, models[spec]


def test_measures_on_the_phone_and_records_the_session(phone, make_backend, tiny_models, phone_home):
    backend = make_backend(op_profiling=True)
    info = backend.device_info()
    assert info["model"] == "Loopback Phone" and info["android"] == "14" and info["abi"] == "x86_64"
    assert info["soc"] == "host HostCPU" and info["governor"] == ["schedutil"]
    assert info["cpu_max_freq_khz"]["cpu7"] == 2_800_000
    assert backend.fingerprint() == "android|FBNETLOOP0001|Loopback Phone"
    assert backend.settings()["runtime_version"].startswith("benchmark_model sha256:")

    results = {spec.key: backend.measure(spec, path, QUICK) for spec, path in tiny_models.items()}
    for r in results.values():
        st = r.summary()
        assert r.samples_ms == [] and st.count >= 3 and 0 < st.min <= st.median <= st.max
        assert r.extra["temperature_c"] == 38.0 and "thermal_zone0:cpu-big" in r.extra["zones_c"]
        assert r.extra["op_profile"][0]["node_type"] == "TfLiteXNNPackDelegate"
        assert r.extra["timings_us"]["inference_avg"] == pytest.approx(st.mean * 1000, rel=1e-3)

    # The command: pinned with taskset, the protocol's settings, every word quoted.
    bench = [c for c in phone.commands if "--graph=" in c and ".no-such-model" not in c]
    words = shlex.split(bench[0].split("\n")[0].removeprefix("( "))
    assert words[:3] == ["taskset", "1", "/data/local/tmp/fbnet-lut/benchmark_model"]
    assert {"--num_threads=1", "--warmup_runs=1", "--num_runs=3", "--min_secs=0", "--use_xnnpack=true",
            "--enable_op_profiling=true"} <= set(words)

    # benchmark_model pushed once and verified, each model once; all removed again by close().
    pushed = phone.sent
    assert pushed.count("/data/local/tmp/fbnet-lut/benchmark_model") == 1
    assert len([p for p in pushed if p.endswith(".tflite")]) == len(tiny_models)
    assert (phone.data_dir / "fbnet-lut/benchmark_model").stat().st_mode & stat.S_IXUSR
    backend.close()
    assert not (phone.data_dir / "fbnet-lut").exists()


def test_models_on_the_phone_with_the_same_checksum_are_reused(phone, make_backend, tiny_models):
    spec, path = _first(tiny_models)
    first = make_backend(keep_files=True)
    first.measure(spec, path, QUICK)
    first.close()
    assert (phone.data_dir / "fbnet-lut/benchmark_model").exists()  # kept, as asked
    before = list(phone.sent)
    second = make_backend()
    second.measure(spec, path, QUICK)
    assert phone.sent == before  # neither the binary nor the model went over the wire again

    # A model file corrupted on the phone no longer matches its checksum: it is pushed afresh.
    second.close()
    third = make_backend(keep_files=True)
    third.measure(spec, path, QUICK)
    third.close()
    model = next((phone.data_dir / "fbnet-lut/models").glob("*.tflite"))
    model.write_bytes(b"garbage")
    fourth = make_backend()
    fourth.measure(spec, path, QUICK)
    assert phone.sent[-1].endswith(model.name)


def test_thermal_guard_waits_for_the_phone_to_cool(phone, make_backend, tiny_models):
    spec, path = _first(tiny_models)
    backend = make_backend()
    backend.measure(spec, path, QUICK)  # session set up, so the next measure starts with the thermal check
    phone.set_temperatures({"cpu-big": 61.0, "cpu-little": 50.0, "battery": 30.0})
    cooler = threading.Timer(0.8, phone.set_temperatures, [{"cpu-big": 41.0, "cpu-little": 39.0, "battery": 30.0}])
    cooler.start()
    r = backend.measure(spec, path, QUICK)
    cooler.join()
    assert r.extra["thermal_wait_seconds"] >= 0.6
    assert r.extra["temperature_c"] == 41.0


def test_thermal_guard_gives_up_with_a_clear_error(phone, make_backend, tiny_models):
    spec, path = _first(tiny_models)
    phone.set_temperatures({"cpu-big": 70.0})
    with pytest.raises(DeviceError, match=r"stayed above 45 C \(70.0 C\).*raise cooldown_celsius"):
        make_backend(cooldown_timeout_seconds=0.5).measure(spec, path, QUICK)
    with pytest.raises(DeviceError, match=r"thermal_zones \['gpu\*'\].*match none.*cpu-big"):
        make_backend(thermal_zones=["gpu*"]).measure(spec, path, QUICK)


@pytest.mark.parametrize("before", [False, True])
def test_fixed_performance_mode_is_switched_on_and_restored(phone, make_backend, tiny_models, before):
    spec, path = _first(tiny_models)
    power = phone.root / "power.json"
    power.write_text(json.dumps({"fixed_performance_mode": before, "history": []}))
    backend = make_backend(fixed_performance_mode=True)
    backend.measure(spec, path, QUICK)
    assert json.loads(power.read_text())["fixed_performance_mode"] is True
    backend.close()
    state = json.loads(power.read_text())
    assert state["fixed_performance_mode"] is before and state["history"] == ["true", str(before).lower()]


def test_a_path_cannot_inject_shell_commands(phone, make_backend, tiny_models):
    canary = phone.data_dir / "canary"
    canary.write_text("alive")
    # Paths in the payload are relative to the shell's working folder "/" (absolute ones would be remapped by the
    # test daemon inside the quoted string, which a phone would not do).
    evil = "/data/local/tmp/x; rm -rf data/local/tmp/canary; echo $(touch data/local/tmp/pwned) `touch pwned2` #"
    spec, path = _first(tiny_models)
    backend = make_backend(remote_dir=evil, keep_files=True)
    r = backend.measure(spec, path, QUICK)
    assert r.summary().count >= 3
    assert canary.read_text() == "alive" and not (phone.data_dir / "pwned").exists()
    assert not (phone.root / "pwned2").exists()
    assert any("benchmark_model" in p.name for p in phone.data_dir.rglob("*"))
    words = ["rm", "-rf", "/x; rm -rf /", "$(id)", "`id`", "a'b", 'a"b', "*"]
    assert shlex.split(quote(*words)) == words


def test_a_dropped_connection_is_retried(phone, make_backend, tiny_models):
    spec, path = _first(tiny_models)
    drops = []

    def cut_the_first_benchmark(command: str) -> str | None:
        if "--graph=" in command and ".no-such-model" not in command and not drops:
            drops.append(command)
            return "drop"
        return None

    phone.shell_hook = cut_the_first_benchmark
    r = make_backend().measure(spec, path, QUICK)
    assert drops and r.summary().count >= 3 and r.extra["reconnects"] == 1


def test_a_phone_gone_for_good_stops_with_the_resume_hint(phone, make_backend, tiny_models):
    spec, path = _first(tiny_models)
    backend = make_backend()
    backend.measure(spec, path, QUICK)
    phone.go_offline()
    t0 = time.perf_counter()
    with pytest.raises(DeviceError, match=r"lost the connection to phone at 127\.0\.0\.1:\d+ .* 2 reconnect\(s\) "
                                          r"failed; .* rerun the same command to resume"):
        backend.measure(spec, path, QUICK)
    assert time.perf_counter() - t0 < 10  # reconnect attempts are bounded, not a hang


def test_the_phone_is_full(phone, make_backend, tiny_models, phone_home):
    spec, path = _first(tiny_models)
    phone.quota_bytes = (phone_home / "benchmark_model").stat().st_size + 100  # room for the binary only
    with pytest.raises(DeviceError, match=r"the phone is full: pushing .*\.tflite .* No space left on device.*"
                                          r"free some storage"):
        make_backend().measure(spec, path, QUICK)


def test_a_model_that_fails_on_the_phone_surfaces_the_tools_error(phone, make_backend, tiny_models, tmp_path):
    spec, _ = _first(tiny_models)
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"this is not a flatbuffer" * 10)
    with pytest.raises(DeviceError) as err:
        make_backend().measure(spec, broken, QUICK)
    msg = str(err.value)
    assert msg.startswith(f"benchmark_model failed on {spec.key} (exit 1): ")
    assert "Failed to load model" in msg and "\n" not in msg


def test_benchmark_binary_missing_or_for_another_abi(phone, make_backend, tiny_models, phone_home):
    spec, path = _first(tiny_models)
    with pytest.raises(DeviceError, match=r"benchmark binary .*/nope does not exist: download .* docs/android.md"):
        make_backend(benchmark_binary=str(phone_home / "nope")).measure(spec, path, QUICK)

    arm = phone_home / "arm64_benchmark_model"  # an ELF header for aarch64 (e_machine 183)
    arm.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(9) + (2).to_bytes(2, "little") + (183).to_bytes(2, "little")
                    + bytes(40))
    with pytest.raises(DeviceError, match=r"built for arm64-v8a but the phone runs x86_64, x86: download "
                                          r"benchmark_model for x86_64"):
        make_backend(benchmark_binary=str(arm)).measure(spec, path, QUICK)

    broken = phone_home / "x86_benchmark_model"  # the right ABI on paper, but the phone cannot execute it
    broken.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(9) + (2).to_bytes(2, "little") + (62).to_bytes(2, "little")
                       + bytes(8))
    with pytest.raises(DeviceError, match=r"benchmark_model does not run on the phone \(.*\): use the build for "
                                          r"its ABI \(x86_64, x86\)"):
        make_backend(benchmark_binary=str(broken)).measure(spec, path, QUICK)

    text = phone_home / "readme.txt"
    text.write_text("not a program")
    with pytest.raises(DeviceError, match=r"is not an executable \(no ELF header\)"):
        make_backend(benchmark_binary=str(text)).settings()


def test_unauthorized_phone_and_first_use_key(phone, phone_home):
    phone.authorize_new_keys = False  # the "Allow USB debugging?" prompt stays unanswered
    key = phone_home / "keys" / "adbkey"
    session = AdbSession(Target("tcp", host="127.0.0.1", port=phone.port), key, auth_timeout=1, connect_timeout=2)
    with pytest.raises(DeviceError, match=r"did not authorize this computer within 1 s: unlock it, accept the "
                                          r"'Allow USB debugging\?' prompt for key .*adbkey\.pub"):
        session.connect()
    assert phone.prompts == 1
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert Path(f"{key}.pub").read_text().split()[0]  # the Android-format public key the phone showed

    phone.authorize_new_keys = True  # tapped "Allow": from now on the key signs the token, no prompt
    session.connect()
    assert session.shell("echo $((6 * 7))").output.strip() == "42"
    session.close()
    AdbSession(Target("tcp", host="127.0.0.1", port=phone.port), key).connect()
    assert phone.prompts == 2


def test_absent_phones(phone_home):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    tcp = AdbSession(Target("tcp", host="127.0.0.1", port=free), phone_home / "adbkey", reconnect_attempts=0)
    with pytest.raises(DeviceError, match=rf"nothing accepts ADB connections at 127\.0\.0\.1:{free}: .*adb tcpip"):
        tcp.shell("true")

    usb = AdbSession(Target("usb", serial="NOPE123"), phone_home / "adbkey", reconnect_attempts=0)
    try:
        import usb1  # noqa: F401
    except ImportError:
        expected = r"USB phones need adb-shell's USB support: pip install 'fbnet-lut\[usb\]'"
    else:
        expected = r"no phone with serial NOPE123 found on USB|no permission to open"
    with pytest.raises(DeviceError, match=expected):
        usb.connect()


def test_exit_codes_come_back_through_the_legacy_shell(phone, phone_home):
    session = AdbSession(Target("tcp", host="127.0.0.1", port=phone.port), phone_home / "adbkey")
    res = session.shell("printf 'no newline'; exit 3")
    assert res.output == "no newline" and res.exit_code == 3
    assert session.shell("echo to-stderr >&2").output == "to-stderr\n"
    with pytest.raises(DeviceError, match=r"listing failed on phone at .* \(exit [12]\): ls: .*definitely-not-here"):
        session.check("ls /data/local/tmp/definitely-not-here", what="listing")
    session.close()
    assert os.environ["FBNET_LUT_TEST_HOME"] == str(phone_home)
    assert install_standin(phone_home / "again").read_text().startswith("#!")
