"""fbnet-lut measure and validate --module/--onnx/--models, and the bad input of any-model pricing, run as real
subprocesses against ONNX Runtime and a real SQLite store."""

from __future__ import annotations

import json
import sqlite3

import pytest

from latency_lut.backends import create_backend
from latency_lut.build import build_lut
from latency_lut.devices import get_device
from latency_lut.measure import Protocol
from latency_lut.spaces import get_space
from latency_lut.store import Store

QUICK = ["--warmup", "1", "--runs", "3", "--min-seconds", "0"]
MODELS = '''
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.pw = nn.Sequential(nn.Conv2d(8, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(32, 32, 3, 1, 1, groups=32, bias=False), nn.BatchNorm2d(32), nn.ReLU6())
        self.pwl = nn.Sequential(nn.Conv2d(32, 8, 1, bias=False), nn.BatchNorm2d(8))

    def forward(self, x):
        x = self.stem(x)
        return x + self.pwl(self.dw(self.pw(x)))


def block():
    return Block()


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.lstm = nn.LSTM(8, 16, batch_first=True)

    def forward(self, x):
        out, _ = self.lstm(self.conv(x).flatten(2).transpose(1, 2))
        return out


def mlp():
    return nn.Sequential(nn.Linear(16, 16), nn.ReLU())
'''


@pytest.fixture
def work(tmp_path):
    (tmp_path / "mymodels.py").write_text(MODELS)
    space = get_space("fbnet", 32, 0.25)
    device = get_device("local")
    backend = create_backend(device, "onnxruntime", threads=1)
    with Store(tmp_path / "store.sqlite") as st:  # an empty LUT of this machine: units get measured on demand
        build_lut(space, device, backend, st, Protocol(warmup=1, runs=3, min_seconds=0, retries=0),
                  specs=[space.stem_spec()]).lut.save(tmp_path / "lut.json")
    backend.close()
    return tmp_path


def test_measure_module_and_onnx_store_content_keys(cli, work):
    res = json.loads(cli("measure", "-m", "mymodels:block", "--input-shape", "1,3,32,32", "--rounds", "2", *QUICK,
                         "--json", check=True).stdout)
    (m,) = res["models"]
    assert m["key"].startswith("model-") and len(m["key"]) == 22 and m["median_ms"] > 0 and len(m["round_ms"]) == 2
    assert res["runtime"] == "onnxruntime" and res["rounds"] == 2
    # the same factory exports the same model: the key repeats, and the store's rounds of it are reused (a killed
    # measure resumes): asked for 3 rounds, the second run takes only round 3
    again = json.loads(cli("measure", "-m", "mymodels.py:block", "--input-shape", "1,3,32,32", "--rounds", "3",
                           *QUICK, "--json", check=True).stdout)
    assert again["models"][0]["key"] == m["key"] and again["models"][0]["round_ms"][:2] == m["round_ms"]
    with sqlite3.connect(work / "store.sqlite") as db:
        n = db.execute("SELECT COUNT(*) FROM measurements WHERE key = ?", (m["key"],)).fetchone()[0]
    assert n == 3  # one row per round
    out = cli("measure", "-m", "mymodels:block", "--input-shape", "1,3,32,32", "--rounds", "1", *QUICK,
              check=True).stdout
    assert m["key"] in out and "interleaved round" in out


def test_validate_module_and_models_list(cli, work):
    (work / "zoo.txt").write_text("# my models\nmymodels.py:block 1,3,32,32\n\nmymodels:block  # again\n")
    proc = cli("validate", "--lut", "lut.json", "--models", "zoo.txt", "--measure-missing", "--rounds", "2",
               "--json", "--csv", "v.csv", "--plot", "v.png", check=True)
    res = json.loads(proc.stdout)
    rows = res["rows"]
    assert len(rows) == 2 and all(r["measured_ms"] > 0 and r["plain_ms"] > 0 for r in rows)
    assert rows[0]["choices"] == "2 units, 0 from primitives"  # stem conv + one MBConv unit
    assert res["summary"]["plain_sum"]["n"] == 2
    assert (work / "v.csv").read_text().count("\n") == 3 and (work / "v.png").stat().st_size > 1000
    lut = json.loads((work / "lut.json").read_text())
    assert "ir-in16x16x8-out8-k3-e4-g1-s1-relu6" in lut["entries"] and "validation_models" in lut["header"]
    table = cli("validate", "--lut", "lut.json", "-m", "mymodels:block", "--input-shape", "1,3,32,32",
                "--rounds", "1", check=True).stdout
    assert "mymodels:block" in table and "plain sum" in table


def test_measure_weights_cold_keeps_its_rounds_apart(cli, work):
    """--weights cold: the model under its content key with a -cold suffix, timed over copies of itself (the
    store's rounds say how many); its hot rounds are another key. validate --weights cold compares the same way."""
    args = ["-m", "mymodels:block", "--input-shape", "1,3,32,32", "--rounds", "2", *QUICK, "--json"]
    hot = json.loads(cli("measure", *args, check=True).stdout)["models"][0]
    cold = json.loads(cli("measure", *args, "--weights", "cold", check=True).stdout)["models"][0]
    assert cold["key"] == hot["key"] + "-cold" and cold["weights"] == "cold" and hot["weights"] == "hot"
    with sqlite3.connect(work / "store.sqlite") as db:
        copies = {k: json.loads(e).get("weight_copies") for k, e in db.execute(
            "SELECT key, extra FROM measurements WHERE key LIKE 'model-%'")}
    assert copies[hot["key"]] is None and copies[cold["key"]] >= 2
    res = json.loads(cli("validate", "--lut", "lut.json", "-m", "mymodels:block", "--input-shape", "1,3,32,32",
                         "--measure-missing", "--rounds", "2", "--weights", "cold", "--json", check=True).stdout)
    (row,) = res["rows"]
    assert row["key"] == cold["key"] and row["measured_ms"] > 0 and row["plain_ms"] > 0


@pytest.mark.parametrize("args,msg", [
    (["measure", "-d", "pixel", "-m", "mymodels:block", "--weights", "cold"], "device 'pixel' (android) cannot"),
    (["measure", "-r", "torch", "-m", "mymodels:block", "--input-shape", "1,3,32,32", "--weights", "cold"],
     "runtime 'torch' cannot"),
    (["validate", "--lut", "lut.json", "--weights", "cold"], "--weights cold times whole models given with"),

    (["predict", "--lut", "lut.json", "-m", "mymodels:Recurrent", "--input-shape", "1,3,8,8"],
     "lstm (LSTM layer)"),
    (["predict", "--lut", "lut.json", "-m", "mymodels:mlp"], "give it with --input-shape"),
    (["measure", "-m", "mymodels:mlp"], "give it with --input-shape"),
    (["measure", "--onnx", "nothing.onnx"], "nothing.onnx does not exist"),
    (["validate", "--lut", "lut.json", "--models", "bad.txt"], "bad.txt line 2"),
    (["measure"], "give at least one model"),
])
def test_bad_input_is_one_error_line(cli, work, args, msg):
    (work / "bad.txt").write_text("mymodels:block\nthis is not a model line\n")
    proc = cli(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and msg in lines[0], proc.stderr


def test_measure_on_iphone_bundles_whole_models_and_ingest_stores_them(cli, work):
    from ios_applog import console_log, time_bundle

    res = json.loads(cli("measure", "-d", "iphonex", "-m", "mymodels:block", "--input-shape", "1,3,32,32",
                         *QUICK, "--json", check=True).stdout)
    key = res["models"][0]["key"]
    bundle = work / res["bundle"]
    assert key.startswith("model-") and res["ingest_command"].startswith("fbnet-lut ingest --device iphonex")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert [m["key"] for m in manifest["models"]] == [key]
    # the phone is replaced by this machine running the bundle's own .tflite under its own parameters
    (work / "console.log").write_text(console_log(time_bundle(bundle)))
    rep = json.loads(cli("ingest", "--device", "iphonex", "--bundle", str(bundle), "console.log", "--json",
                         check=True).stdout)
    assert rep["added"] == [key] and rep["missing"] == []
    with sqlite3.connect(work / "store.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM measurements WHERE key = ?", (key,)).fetchone()[0] == 1


def test_measure_dtype_int8_runs_quantized_models(cli, work, artifact_cache):
    """--dtype int8 quantizes a torch module and an ONNX file as a build quantizes its ops: other content keys
    than fp32, int8 kernels in what ONNX Runtime runs, the dtype in the stored settings; torch: a clean error."""
    from pathlib import Path

    from latency_lut.quantize import ort_kernels

    fp32 = json.loads(cli("measure", "-m", "mymodels:block", "--input-shape", "1,3,32,32", "--rounds", "1", *QUICK,
                          "--json", check=True).stdout)["models"][0]
    onnx_file = next(Path(artifact_cache).glob(f"artifacts/*/{fp32['key']}.onnx"))
    res = json.loads(cli("measure", "-m", "mymodels:block", "--onnx", str(onnx_file), "--input-shape", "1,3,32,32",
                         "--dtype", "int8", "--rounds", "2", *QUICK, "--json", check=True).stdout)
    assert res["dtype"] == "int8" and len(res["models"]) == 2
    for m in res["models"]:
        assert m["median_ms"] > 0 and m["key"] != fp32["key"] and not m["error"]
        (art,) = Path(artifact_cache).glob(f"artifacts/*int8*/{m['key']}-int8.onnx")
        kernels = ort_kernels(art)
        assert kernels["com.microsoft:QLinearConv"] >= 3 and "Conv" not in kernels, kernels
    with sqlite3.connect(work / "store.sqlite") as db:
        settings = [json.loads(s) for (s,) in db.execute(
            "SELECT s.settings FROM measurements m JOIN sessions s ON m.session_id = s.id WHERE m.key = ?",
            (res["models"][0]["key"],))]
    assert settings and all(s["dtype"] == "int8" for s in settings)
    bad = cli("measure", "-r", "torch", "--dtype", "int8", "-m", "mymodels:block", "--input-shape", "1,3,32,32")
    assert bad.returncode == 2 and bad.stderr.startswith("Error:") and "'torch'" in bad.stderr \
        and "'int8'" in bad.stderr, bad.stderr
