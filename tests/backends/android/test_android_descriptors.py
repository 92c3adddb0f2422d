"""Android descriptors: the built-ins load, and every mistake is one line naming the field and the fix."""

from __future__ import annotations

import pytest
from android_fixtures import loopback_doc

from latency_lut.backends import create_backend
from latency_lut.devices import get_device, parse_descriptor
from latency_lut.errors import DeviceError


@pytest.mark.parametrize("name", ["pixel", "s8"])
def test_builtin_phones_load_without_touching_a_phone(name):
    dev = get_device(name)
    assert dev.kind == "android" and dev.runtime == "litert"
    backend = create_backend(dev, threads=2)
    c = backend.config
    assert c.target.transport == "usb" and c.cpu_mask == "f0" and backend.threads == 2
    assert c.thermal_zones and c.cooldown_celsius == 50 and c.adb_key.name == "adbkey"
    assert not backend.adb.connected


@pytest.mark.parametrize("change, message", [
    (dict(cpu_maks="f0"), r"unknown field 'cpu_maks'; did you mean 'cpu_mask'\?"),
    (dict(benchmark_binary=None), r"required field 'benchmark_binary' is missing"),
    (dict(transport=None), r"required field 'transport' is missing"),
    (dict(transport="bluetooth"), r"field 'transport' must be 'usb' or 'tcp', got 'bluetooth'"),
    (dict(address="localhost"), r"field 'address' must be HOST:PORT for transport tcp, got 'localhost'"),
    (dict(cpu_mask=240), r"field 'cpu_mask' must be a quoted hex string such as \"f0\""),
    (dict(cpu_mask="zz"), r"field 'cpu_mask' must be a non-zero hex CPU mask"),
    (dict(thermal_zones=None), r"field 'cooldown_celsius' needs thermal_zones"),
    (dict(remote_dir="/data/local/tmp"), r"field 'remote_dir' must be an absolute folder of its own"),
    (dict(xnnpack="yes"), r"field 'xnnpack' has the wrong type \(str\)"),
    (dict(reconnect_attempts=-1), r"field 'reconnect_attempts' must be >= 0"),
])
def test_bad_descriptors(change, message, monkeypatch):
    monkeypatch.setenv("FBNET_LUT_TEST_ADB_PORT", "40000")
    monkeypatch.setenv("FBNET_LUT_TEST_HOME", "/tmp/nowhere")
    with pytest.raises(DeviceError, match=r"^device descriptor bad\.yaml: " + message):
        create_backend(parse_descriptor(loopback_doc(**change), "bad.yaml"))


def test_variables_and_usb_serial_from_the_environment(monkeypatch):
    monkeypatch.setenv("FBNET_LUT_TEST_ADB_PORT", "40123")
    monkeypatch.setenv("FBNET_LUT_TEST_HOME", "/opt/phone")
    c = create_backend(parse_descriptor(loopback_doc(), "x.yaml")).config
    assert (c.target.host, c.target.port) == ("127.0.0.1", 40123)
    assert str(c.benchmark_binary) == "/opt/phone/benchmark_model" and str(c.adb_key) == "/opt/phone/adbkey"
    monkeypatch.setenv("ANDROID_SERIAL", "R58M123")
    assert create_backend(get_device("pixel")).config.target.serial == "R58M123"


def test_import_latency_lut_does_not_import_adb_shell():
    import subprocess
    import sys

    from conftest import cli_env

    code = ("import sys, latency_lut, latency_lut.devices, latency_lut.backends, latency_lut.backends.android.config; "
            "print('adb_shell' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_thermal_zone_readings_and_selection():
    from latency_lut.backends.thermal import parse_zones, select_zones

    text = ("thermal_zone0\tcpu-1-0-usr\t48200\nthermal_zone1\tBIG\t51\nthermal_zone2\tbattery\t31000\n"
            "thermal_zone3\tbogus\t-273000\nthermal_zone4\tgpu\t\n")
    zones = parse_zones(text)
    assert [(z.name, z.celsius) for z in zones] == [("thermal_zone0", 48.2), ("thermal_zone1", 51.0),
                                                   ("thermal_zone2", 31.0)]  # millidegrees or degrees; junk out
    assert [z.type for z in select_zones(zones, ["cpu*", 1])] == ["cpu-1-0-usr", "BIG"]
    assert select_zones(zones, ["gpu"]) == []
