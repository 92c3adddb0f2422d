"""SSH board descriptors: the built-in loads without a board, every mistake is one line, the ssh command is safe."""

from __future__ import annotations

import pytest
from ssh_fixtures import board_doc

from latency_lut.backends import create_backend
from latency_lut.backends.ssh.config import SshTarget
from latency_lut.backends.ssh.transport import ssh_argv
from latency_lut.devices import get_device, parse_descriptor
from latency_lut.errors import DeviceError


def test_raspi4_loads_without_touching_a_board():
    dev = get_device("raspi4")
    assert dev.kind == "ssh" and dev.runtime == "litert" and dev.runtimes == ("litert", "onnxruntime")
    backend = create_backend(dev, threads=4)
    c = backend.config
    assert (c.target.host, c.target.port, c.target.user) == ("raspberrypi.local", None, None)
    assert c.cpu_mask == "8" and c.governor == "performance" and c.thermal_zones == ("cpu-thermal",)
    assert backend.threads == 4 and backend.artifact_format == "tflite" and backend._session is None
    assert create_backend(dev, "onnxruntime").artifact_format == "onnx"
    with pytest.raises(DeviceError, match="runtime 'torch' is not available on ssh devices"):
        create_backend(parse_descriptor({**board_doc(), "runtime": "torch", "runtimes": ["torch"]}, "b.yaml"))


@pytest.mark.parametrize("host, expect", [
    ("pi.lan", ("pi.lan", None, None)), ("pi@pi.lan", ("pi.lan", None, "pi")), ("10.0.0.7:2222", ("10.0.0.7", 2222,
                                                                                                  None)),
    ("[fe80::1]:22", ("fe80::1", 22, None)), ("fe80::1", ("fe80::1", None, None)),
])
def test_host_forms(host, expect, monkeypatch):
    monkeypatch.setenv("FBNET_LUT_TEST_SSH", "/nonexistent")
    t = create_backend(parse_descriptor(board_doc(host=host, ssh_config=None), "b.yaml")).config.target
    assert (t.host, t.port, t.user) == expect


@pytest.mark.parametrize("change, message", [
    (dict(host=None), r"required field 'host' is missing"),
    (dict(host="-oProxyCommand=touch /tmp/x"), r"field 'host' must be an alias from your ~/.ssh/config"),
    (dict(host="pi; touch x"), r"field 'host' must be an alias"),
    (dict(host="pi:22", port=2222), r"field 'port' is 2222 but 'host' says port 22; give it once"),
    (dict(port=70000), r"field 'port' must be between 1 and 65535"),
    (dict(user="-l root"), r"field 'user' must be a login name"),
    (dict(ssh_config="/nonexistent/config"), r"field 'ssh_config' names /nonexistent/config, which does not exist"),
    (dict(ssh_options=["-oProxyCommand=x"]), r"field 'ssh_options' lists ssh -o settings"),
    (dict(cpu_mask=8), r"field 'cpu_mask' must be a quoted hex string such as \"f0\""),
    (dict(cpu_mask="0"), r"field 'cpu_mask' must be a non-zero hex CPU mask"),
    (dict(governor="performance; reboot"), r"field 'governor' must be a cpufreq governor name"),
    (dict(cooldown_celsius=50), r"field 'cooldown_celsius' needs thermal_zones"),
    (dict(remote_dir="~/x"), r"field 'remote_dir' must be a folder of its own"),
    (dict(remote_dir="/tmp"), r"field 'remote_dir' must be a folder of its own"),
    (dict(litert_module="tflite"), r"field 'litert_module' must be one of auto, tflite_runtime, ai_edge_litert"),
    (dict(optimization="max"), r"field 'optimization' must be one of none, basic, extended, all"),
    (dict(pyhton="/usr/bin/python3"), r"unknown field 'pyhton'; did you mean 'python'\?"),
    (dict(reconnect_attempts=-1), r"field 'reconnect_attempts' must be >= 0"),
])
def test_bad_descriptors(change, message, monkeypatch, tmp_path):
    (tmp_path / "ssh_config").write_text("")
    monkeypatch.setenv("FBNET_LUT_TEST_SSH", str(tmp_path))
    with pytest.raises(DeviceError, match=r"^device descriptor bad\.yaml: " + message):
        create_backend(parse_descriptor(board_doc(**change), "bad.yaml"))


def test_the_ssh_command_line():
    t = SshTarget("pi.lan", 2222, "pi", options=("ProxyJump=gw",), connect_timeout=7)
    argv = ssh_argv(t, "echo 'x'")
    assert argv[0] == "ssh" and argv[-3:] == ["--", "pi.lan", "echo 'x'"]  # the host can never be an option
    assert ["-o", "BatchMode=yes"] == argv[argv.index("BatchMode=yes") - 1:argv.index("BatchMode=yes") + 1]
    assert {"ConnectTimeout=7", "ProxyJump=gw", "ServerAliveInterval=5"} <= set(argv)
    assert argv[argv.index("-p") + 1] == "2222" and argv[argv.index("-l") + 1] == "pi"
