"""int8 artifacts: what ONNX Runtime and LiteRT actually run, the dtype checks, and a build that goes on."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST

from latency_lut.build import build_lut, config_for
from latency_lut.export import artifact_path, export_spec
from latency_lut.measure import Protocol
from latency_lut.networks import export_networks, sample_archs
from latency_lut.ops import OpSpec
from latency_lut.quantize import (
    DtypeError,
    calibration_batches,
    check_dtype,
    check_lut_dtype,
    ort_kernels,
    tflite_ops,
    xnnpack_partitions,
)
from latency_lut.spaces import get_space

QUICK = Protocol(warmup=1, runs=3, min_seconds=0, retries=0)
BLOCK = OpSpec.from_key("ir-in16x16x8-out8-k3-e3-g2-s1")  # group convs, shuffle, residual add


def test_onnx_int8_runs_int8_kernels(artifact_cache):
    path = export_spec(BLOCK, "onnx", dtype="int8")
    assert path.name == f"{BLOCK.key}-int8.onnx" and path != artifact_path(BLOCK, "onnx")
    kernels = ort_kernels(path)
    # every conv is ORT's int8 QLinearConv, the residual an int8 add; nothing is dequantized to run in fp32, and
    # the micro-model pays no quantize/dequantize at its boundary (uint8 I/O)
    assert kernels["com.microsoft:QLinearConv"] == 3 and kernels["com.microsoft:QLinearAdd"] == 1
    assert not {"Conv", "Add", "QuantizeLinear", "DequantizeLinear"} & set(kernels), kernels
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].type == sess.get_outputs()[0].type == "tensor(uint8)"


def test_onnx_int8_op_left_in_float_pays_what_a_network_pays(artifact_cache):
    # ORT has no int8 ReduceMean: inside a quantized network the global pool runs in fp32 between a
    # DequantizeLinear and a QuantizeLinear, and so does its micro-model
    kernels = ort_kernels(export_spec(OpSpec.from_key("gap-in4x4x32"), "onnx", dtype="int8"))
    assert kernels == {"DequantizeLinear": 1, "ReduceMean": 1, "QuantizeLinear": 1}


def test_tflite_int8_is_full_integer_and_xnnpack_runs_it(artifact_cache):
    path = export_spec(BLOCK, "tflite", dtype="int8")
    ops = tflite_ops(path)
    convs = [(op, dt) for op, dt in ops if op in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert len(convs) == 3 and all(dt[:2] == ("int8", "int8") and dt[2] == "int32" for _, dt in convs), ops
    assert not {"QUANTIZE", "DEQUANTIZE"} & {op for op, _ in ops}, ops  # int8 I/O, no boundary pair
    assert xnnpack_partitions(path) >= 1
    from latency_lut.backends.local_litert import LiteRTBackend

    it = LiteRTBackend().interpreter(path)
    assert it.get_input_details()[0]["dtype"] == np.int8 and it.get_output_details()[0]["dtype"] == np.int8


def test_whole_network_int8_onnx(artifact_cache):
    space = get_space("fbnet", 32, 0.25)
    net = sample_archs(space, 0, 0)[0]  # FBNet-A
    path = export_networks([net], "onnx", dtype="int8")[net.key]
    assert isinstance(path, Path), path
    kernels = ort_kernels(path)
    assert kernels["com.microsoft:QLinearConv"] >= len(net.specs) - 3 and "Conv" not in kernels, kernels
    assert kernels["com.microsoft:QGemm"] == 1


def test_calibration_data_kinds():
    r, c, s = (calibration_batches((1, 3, 16, 16), k, n=2) for k in ("random", "constant", "smooth"))
    assert r[0].dtype == np.float32 and r[0].std() > 0.8
    assert np.ptp(c[0]) == 0 and not np.array_equal(c[0], c[1])
    # smooth: neighbouring pixels are alike, unlike noise
    assert np.abs(np.diff(s[0], axis=-1)).mean() < 0.5 * np.abs(np.diff(r[0], axis=-1)).mean()
    with pytest.raises(ValueError, match="unknown calibration data"):
        calibration_batches((1, 3), "imagenet")


def test_dtype_checks():
    assert check_dtype("litert", "int8") == "int8"
    with pytest.raises(DtypeError, match="runtime 'onnxruntime' on device 'local' cannot run dtype 'fp16'"):
        check_dtype("onnxruntime", "fp16", "local")
    with pytest.raises(DtypeError, match="'torch'.*int8"):
        check_dtype("torch", "int8")
    with pytest.raises(DtypeError, match="measured in int8, not fp32"):
        check_lut_dtype({"dtype": "int8"}, "fp32")
    with pytest.raises(DtypeError, match="measured in fp32, not int8"):
        check_lut_dtype({}, "int8")
    assert check_lut_dtype({"dtype": "int8"}, None) == "int8"


def test_int8_build_is_its_own_configuration_and_names_a_failed_block(tmp_path, artifact_cache, monkeypatch):
    from latency_lut import export as export_mod
    from latency_lut.backends import create_backend
    from latency_lut.devices import get_device
    from latency_lut.store import Store

    space = get_space("fbnet", 32, 0.25)
    dev = get_device("local")
    fp32, int8 = create_backend(dev, "onnxruntime"), create_backend(dev, "onnxruntime", "int8")
    assert config_for(dev, fp32, QUICK).hash != config_for(dev, int8, QUICK).hash
    assert config_for(dev, int8, QUICK).settings["exporter"]["quantizer"] == "onnxruntime.quantization"
    specs = [BLOCK, OpSpec.from_key("conv-in32x32x3-out8-k3-s2")]
    real = export_mod.quantize_onnx

    def failing(fp32_path, out, shape, *a):  # the converter rejects one block
        if "conv-in32x32x3" in str(out):
            raise RuntimeError("unsupported op")
        return real(fp32_path, out, shape, *a)

    monkeypatch.setattr(export_mod, "quantize_onnx", failing)
    with Store(tmp_path / "s.sqlite") as st:
        res = build_lut(space, dev, int8, st, QUICK, specs=specs)
    assert list(res.failed) == ["conv-in32x32x3-out8-k3-s2"] and "unsupported op" in res.failed[specs[1].key]
    assert list(res.lut.entries) == [BLOCK.key] and res.lut.header["dtype"] == "int8"
    assert not res.lut.header["complete"]


def test_cli_dtype_errors(tmp_path, cli):
    proc = cli("build", "--runtime", "onnxruntime", "--dtype", "fp16", "-q")
    assert proc.returncode == 2 and "cannot run dtype 'fp16'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "profiles").exists()
    from latency_lut.synthetic import synthetic_lut

    lut = synthetic_lut(get_space("fbnet", 32, 0.25))
    lut.header["dtype"] = "int8"
    path = lut.save(tmp_path / "int8.json")
    bad = cli("predict", "--lut", str(path), "-a", "fbnet_a", "--dtype", "fp32")
    assert bad.returncode == 2 and "measured in int8, not fp32" in bad.stderr
    ok = json.loads(cli("predict", "--lut", str(path), "-a", "fbnet_a", "--dtype", "int8", "--json",
                        check=True).stdout)
    assert ok["predictions"][0]["total_ms"] > 0
    bad = cli("validate", "--lut", str(path), "--dtype", "fp32")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    lut.header["dtype"] = "fp32"  # the reverse: an fp32 LUT asked for int8 (or fp16) predictions
    fp32 = lut.save(tmp_path / "fp32.json")
    for want in ("int8", "fp16"):
        bad = cli("predict", "--lut", str(fp32), "-a", "fbnet_a", "--dtype", want)
        assert bad.returncode == 2 and f"measured in fp32, not {want}" in bad.stderr, bad.stderr


def test_cli_int8_build_writes_its_own_lut(tmp_path, cli):
    space = tmp_path / "tiny.yaml"
    space.write_text("name: tiny\nresolution: {default: 32}\nnum_classes: 10\n"
                     "stem:\n  - {op: conv, out: 8, kernel: 3, stride: 2}\n"
                     "stages:\n  - {out: 8, layers: 1, stride: 1, candidates: [k3_e1, k3_e3, skip]}\n"
                     "head:\n  - {op: conv, out: 16, kernel: 1}\n  - {op: gap}\n  - {op: fc, out: classes}\n")
    out = cli("build", "--space", str(space), "--dtype", "int8", *FAST, "-q", "--json")
    if out.returncode != 0:
        pytest.fail(out.stderr)
    summary = json.loads(out.stdout)
    assert summary["dtype"] == "int8" and summary["complete"] and summary["lut"].endswith("-int8.json")
    header = json.loads((tmp_path / summary["lut"]).read_text())["header"]
    assert header["dtype"] == "int8" and header["exporter"]["format"] == "qoperator"
    # validation measures whole int8 networks (quantized whole) against the int8 LUT's sums
    val = cli("validate", "--lut", summary["lut"], "--n", "3", "--rounds", "2", "--no-named", "-q", "--json")
    assert val.returncode == 0, val.stderr
    report = json.loads(val.stdout)
    assert report["summary"]["settings_match"] is True and len(report["rows"]) == 3
    assert all(r["measured_ms"] > 0 and r["predicted_ms"] > 0 for r in report["rows"])


def test_tflite_fp16_has_fp16_weights_and_xnnpack_runs_fp16(artifact_cache):
    """fp16: the fp32 flatbuffer with fp16 conv weights, run with XNNPACK's FORCE_FP16 flag. The flag is honoured,
    not ignored: the outputs differ from fp32 inference by fp16 rounding (and by no more)."""
    from latency_lut.backends import create_backend
    from latency_lut.devices import get_device

    path = export_spec(BLOCK, "tflite", dtype="fp16")
    assert path.name == f"{BLOCK.key}-fp16.tflite"
    ops = tflite_ops(path)
    assert [dt for op, dt in ops if op == "DEQUANTIZE"] == [("float16",)] * 3, ops  # the three convs' weights
    assert all(dt[0] == "float32" for op, dt in ops if op == "CONV_2D")
    fp32_out = _litert_out(export_spec(BLOCK, "tflite"), None)
    fp16_out = _litert_out(path, "fp16")
    rel = np.abs(fp16_out - fp32_out).max() / np.abs(fp32_out).max()
    assert 1e-5 < rel < 2e-2, rel
    backend = create_backend(get_device("local"), "litert", "fp16")
    assert backend.measure(BLOCK, path, QUICK).summary().median > 0


def _litert_out(path: Path, dtype: str | None) -> np.ndarray:
    from latency_lut.backends.local_litert import LiteRTBackend

    b = LiteRTBackend()
    x = np.random.default_rng(0).standard_normal((1, 16, 16, 8)).astype(np.float32)
    if dtype is None:
        it = b.interpreter(path)
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        return it.get_tensor(it.get_output_details()[0]["index"]).copy()
    from ai_edge_litert import options
    from ai_edge_litert.compiled_model import CompiledModel

    from latency_lut.quantize import XNNPACK_FLAGS_FP16

    m = CompiledModel.from_file(str(path), options=options.Options(
        cpu_options=options.CpuOptions(num_threads=1, xnnpack_flags=XNNPACK_FLAGS_FP16)))
    ins, outs = m.create_input_buffers(0), m.create_output_buffers(0)
    ins[0].write(x)
    m.run_by_index(0, ins, outs)
    return outs[0].read(x.size, np.float32).reshape(x.shape)


def test_fp16_build_on_litert_and_clean_errors_elsewhere(tmp_path, artifact_cache):
    from latency_lut.backends import create_backend
    from latency_lut.devices import get_device
    from latency_lut.store import Store

    dev = get_device("local")
    fp16 = create_backend(dev, "litert", "fp16")
    assert config_for(dev, fp16, QUICK).settings["exporter"]["inference"] == "xnnpack-force-fp16"
    space = get_space("fbnet", 32, 0.25)
    with Store(tmp_path / "s.sqlite") as st:
        res = build_lut(space, dev, fp16, st, QUICK, specs=[BLOCK, space.stem_spec()])
    assert res.lut.header["dtype"] == "fp16" and len(res.lut.entries) == 2 and not res.failed
    assert all(e.median > 0 for e in res.lut.entries.values())
    with pytest.raises(DtypeError, match=r"device 'iphonex' \(ios\) cannot run dtype 'fp16'"):
        check_dtype("litert", "fp16", "iphonex", "ios")
    with pytest.raises(DtypeError, match="runtime 'onnxruntime' on device 'local' cannot run dtype 'fp16'"):
        create_backend(dev, "onnxruntime", "fp16")
