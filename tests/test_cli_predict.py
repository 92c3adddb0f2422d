"""fbnet-lut predict --module / --onnx / --json / --measure-missing, run as a real subprocess."""

from __future__ import annotations

import json

import pytest

from latency_lut.backends import create_backend
from latency_lut.build import build_lut
from latency_lut.devices import get_device
from latency_lut.export import export_module
from latency_lut.measure import Protocol
from latency_lut.predict import predict
from latency_lut.spaces import get_space
from latency_lut.store import Store
from latency_lut.synthetic import synthetic_lut

SPACE = get_space("fbnet", 32, 0.25)

MODELS = '''
import torch
from torch import nn
from latency_lut.spaces import get_space

def fbnet_c():
    return get_space("fbnet", 32, 0.25).build_model("fbnet_c")

class Extra(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False), nn.BatchNorm2d(8), nn.Hardswish())

    def forward(self, x):
        return self.dw(self.stem(x))

not_a_model = 3
'''


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "mymodels.py").write_text(MODELS)
    lut = synthetic_lut(SPACE, seed=4)
    lut.save(tmp_path / "lut.json")
    return tmp_path, lut


def test_module_breakdown_and_json(cli, workdir):
    tmp, lut = workdir
    want = predict(lut, "fbnet_c").total_ms
    out = cli("predict", "--lut", "lut.json", "--module", "mymodels:fbnet_c", check=True).stdout
    assert "ir-in16x16x8-out8-k3-e6-g1-s2" in out and "conv-in32x32x3-out8-k3-s2" in out
    assert f"{want:.3f}" in out.splitlines()[0]
    res = json.loads(cli("predict", "--lut", "lut.json", "--module", "mymodels.py:fbnet_c", "--json",
                         check=True).stdout)
    p = res["predictions"][0]
    assert p["total_ms"] == pytest.approx(want, rel=1e-12) and res["measured_missing"] == 0
    assert [o["key"] for o in p["ops"]] == [s.key for s in SPACE.arch_specs("fbnet_c") if not s.is_identity]


def test_onnx_summary(cli, workdir):
    tmp, lut = workdir
    export_module(SPACE.build_model("fbnet_b"), (1, 3, 32, 32), "onnx", tmp / "b.onnx")
    proc = cli("predict", "--lut", "lut.json", "--onnx", "b.onnx", "--json", check=True)
    assert json.loads(proc.stdout)["predictions"][0]["total_ms"] == pytest.approx(predict(lut, "fbnet_b").total_ms)
    out = cli("predict", "--lut", "lut.json", "--onnx", "b.onnx", "--summary", check=True).stdout
    assert "b.onnx" in out and "ir-in" not in out


def test_missing_ops_and_bad_input_exit_2(cli, workdir):
    proc = cli("predict", "--lut", "lut.json", "--module", "mymodels:Extra")
    assert proc.returncode == 2
    assert "conv-in16x16x8-out8-k3-s1-g8-hswish" in proc.stderr and "--measure-missing" in proc.stderr
    assert "Traceback" not in proc.stderr
    for args, msg in [(["--module", "mymodels:not_a_model"], "neither an nn.Module nor a factory"),
                      (["--module", "nosuch:thing"], "cannot import 'nosuch'"),
                      (["--onnx", "none.onnx"], "does not exist"),
                      (["-a", "fbnet_a", "--onnx", "x.onnx"], "exactly one of --arch, --module or --onnx")]:
        proc = cli("predict", "--lut", "lut.json", *args)
        assert proc.returncode == 2 and msg in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_measure_missing_rewrites_the_lut(cli, workdir):
    tmp, _ = workdir
    # a real LUT (one op, fast protocol, the CLI's store); then the module's extra op is measured into it
    device = get_device("local")
    backend = create_backend(device, "onnxruntime", threads=1)
    with Store(tmp / "store.sqlite") as st:
        build_lut(SPACE, device, backend, st, Protocol(warmup=1, runs=3, min_seconds=0, retries=0),
                  specs=[SPACE.stem_spec()]).lut.save(tmp / "real.json")
    backend.close()
    before = json.loads((tmp / "real.json").read_text())["entries"]
    assert "conv-in16x16x8-out8-k3-s1-g8-hswish" not in before
    proc = cli("predict", "--lut", "real.json", "--module", "mymodels:Extra", "--measure-missing", "--json",
               check=True)
    res = json.loads(proc.stdout)
    assert res["measured_missing"] == 1 and "measured 1 missing op(s)" in proc.stderr
    after = json.loads((tmp / "real.json").read_text())["entries"]
    entry = after["conv-in16x16x8-out8-k3-s1-g8-hswish"]
    assert entry["act"] == "hswish" and entry["groups"] == 8 and entry["count"] >= 3 and entry["median"] > 0
    assert res["predictions"][0]["total_ms"] == pytest.approx(
        after["conv-in32x32x3-out8-k3-s2"]["median"] + entry["median"])
