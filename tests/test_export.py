import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from latency_lut.export import artifact_path, export_many, export_spec
from latency_lut.ops import OpSpec

SPECS = [
    OpSpec("ir", 8, 16, 16, 8, 5, 1, 3, 2),   # group conv + channel shuffle + residual
    OpSpec("skip", 8, 16, 16, 16, stride=2),  # projection
    OpSpec("gap", 16, 4, 4),
    OpSpec("fc", 16, cout=10),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.key)
def test_onnx_export_computes_the_same_function(spec, artifact_cache):
    path = export_spec(spec, "onnx")
    onnx.checker.check_model(onnx.load(str(path)))
    x = np.random.default_rng(0).standard_normal(spec.input_shape).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        want = spec.build_module()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_cache_means_a_second_export_does_nothing(artifact_cache):
    spec = SPECS[0]
    path = export_spec(spec, "onnx")
    stamp = path.stat().st_mtime_ns
    seen = []
    out = export_many([spec], "onnx", on_done=seen.append)
    assert out[spec.key] == path and path.stat().st_mtime_ns == stamp and seen == [spec]
    assert path == artifact_path(spec, "onnx") and str(artifact_cache) in str(path)
    assert "torch" in path.parent.name  # the exporter version is part of the cache address


def _tflite_ops(path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    return it, [o["op_name"] for o in it._get_ops_details()]


def test_tflite_block_holds_no_layout_transpose(artifact_cache):
    _, ops = _tflite_ops(export_spec(OpSpec("ir", 8, 16, 16, 16, 3, 2, 6, 1), "tflite"))
    assert "TRANSPOSE" not in ops
    assert ops.count("CONV_2D") == 2 and ops.count("DEPTHWISE_CONV_2D") == 1


def test_tflite_is_nhwc_and_the_shuffle_is_its_only_transpose(artifact_cache):
    spec = SPECS[0]
    it, ops = _tflite_ops(export_spec(spec, "tflite"))
    assert ops.count("TRANSPOSE") == 1
    i = ops.index("TRANSPOSE")
    assert ops[i - 1] == ops[i + 1] == "RESHAPE"  # the channel shuffle, as an NHWC network runs it
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    assert tuple(inp["shape"]) == (1, 16, 16, 8) and tuple(out["shape"]) == (1, 16, 16, 8)
    x = np.random.default_rng(0).standard_normal((1, 8, 16, 16)).astype(np.float32)
    it.set_tensor(inp["index"], x.transpose(0, 2, 3, 1).copy())
    it.invoke()
    with torch.no_grad():
        want = spec.build_module()(torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(it.get_tensor(out["index"]), want, rtol=1e-3, atol=1e-3)


def _workers_die_with(cmd: list[str], cwd, env) -> None:
    """Start ``cmd``, SIGKILL it once its export pool runs, and check that no worker outlives it."""
    import os
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def children() -> list[int]:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    deadline = time.time() + 120
    while len(children()) < 2 and time.time() < deadline:
        time.sleep(0.2)
    workers = children()
    assert len(workers) >= 2, "the export pool never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30
    alive = workers
    while alive and time.time() < deadline:
        time.sleep(0.2)
        alive = [w for w in workers if os.path.exists(f"/proc/{w}") and
                 "Z" not in open(f"/proc/{w}/stat").read().split(")")[-1].split()[0]]
    assert not alive, f"export workers {alive} outlived the killed build"


def test_parallel_export_workers_die_with_a_killed_build(tmp_path):
    import sys

    from conftest import cli_env

    env = cli_env(FBNET_LUT_CACHE=str(tmp_path / "cache"), FBNET_LUT_STORE=str(tmp_path / "s.sqlite"))
    _workers_die_with([sys.executable, "-m", "latency_lut", "build", "--runtime", "litert", "--jobs", "2",
                       "--resolution", "32", "--width", "0.25", "-q", "-o", "l.json"], tmp_path, env)


def test_network_export_workers_die_with_a_killed_validation(tmp_path):
    """Whole networks (validate) go through the same pool as ops, with the same guard (issue 13)."""
    import sys

    from conftest import cli_env

    script = ("from latency_lut.networks import export_networks, sample_archs\n"
              "from latency_lut.spaces import get_space\n"
              "export_networks(sample_archs(get_space('fbnet', 32, 0.25), 8, 0, named=False), 'tflite', jobs=2)\n")
    _workers_die_with([sys.executable, "-c", script], tmp_path, cli_env(FBNET_LUT_CACHE=str(tmp_path / "cache")))


def test_missing_tflite_units_convert_in_one_process_per_cpu_onnx_in_process(monkeypatch):
    import os

    from latency_lut.export import export_jobs

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert export_jobs("tflite", 20) == 3 and export_jobs("tflite", 2) == 2 and export_jobs("tflite", 1) == 1
    assert export_jobs("onnx", 20) == 1 and export_jobs(None, 20) == 1  # a worker's start costs more than these
