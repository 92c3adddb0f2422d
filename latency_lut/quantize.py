"""Quantized artifacts: int8 post-training quantization for ONNX Runtime and LiteRT, and checks that they run int8.

Only latency matters here, so calibration needs no dataset: synthetic batches of the model's input shape
(``CALIBRATION_DATA``; the default was chosen by ``benchmarks/int8_calibration_data.py``, see the README).

Both formats get int8 input and output: the quantize/dequantize pair at the boundary is stripped, so a micro-model
does not pay it as if it were a layer, and a whole network, exported the same way, pays none either -- a sum of
blocks and the network it predicts run the same kernels.

- ONNX: ``quant_pre_process`` (BN folding, shape inference), then ``quantize_static`` with per-channel int8
  weights and uint8 activations in QOperator form (QLinearConv, QLinearAdd, QGemm written out). Why not QDQ: ORT
  fuses a QDQ group into QLinearConv only when its DequantizeLinear is fed by a node and its QuantizeLinear feeds
  one, so a QDQ micro-model with int8 I/O runs its boundary convs in fp32; and why uint8: ORT's x86 kernels for
  int8 x int8 in QOperator form are ~7x slower than uint8 x int8, which is what ORT's QDQ path runs on x86 too
  (``benchmarks/int8_speedup.py`` shows both).
- TFLite: litert-torch's PT2E quantizer for XNNPACK (8-bit symmetric per-channel weights, 8-bit asymmetric
  activations), converted full-integer with NHWC int8 I/O.

fp16 is LiteRT's: the fp32 flatbuffer with fp16 weights (ai-edge-quantizer's float casting of conv and fully
connected weights, the fp16 model a user deploys), run with XNNPACK's FORCE_FP16 flag (``XNNPACK_FLAGS_FP16``),
so that XNNPACK runs fp16 inference (on a phone: benchmark_model's ``--xnnpack_force_fp16``). Where the CPU has no
native fp16 arithmetic, XNNPACK still runs it, converting around fp32 math: on this project's x86 host an fp16 block
ran ~1.9x slower than fp32 (README, "fp16"), which is what such a device would pay.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from latency_lut.errors import ExportError, LatencyLutError

# What each runtime can run. fp16 is LiteRT's alone: XNNPACK runs it; ONNX Runtime's CPU provider has no fp16 convs.
RUNTIME_DTYPES: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("fp32", "int8"),
    "litert": ("fp32", "int8", "fp16"),
    "torch": ("fp32",),
}
# Device kinds whose LiteRT runner sets XNNPACK's fp16 flag (the local CompiledModel, benchmark_model on Android);
# the iOS benchmark app and the SSH board runner have no such switch here.
FP16_KINDS = ("local", "android")
# TfLiteXNNPackDelegateOptions flags: QS8 | QU8 (the defaults), and FORCE_FP16
XNNPACK_FLAGS_DEFAULT = 1 | 2
XNNPACK_FLAGS_FP16 = XNNPACK_FLAGS_DEFAULT | 4
FP16_WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
CALIBRATION_DATA = ("random", "constant", "smooth")
DEFAULT_CALIBRATION = "random"
CALIBRATION_BATCHES = 8
_RECIPE = "q1"  # bump when the quantization recipe changes (cache folder and settings hash follow)


class DtypeError(LatencyLutError):
    """A dtype that a runtime, a device or a LUT cannot take."""


def check_dtype(runtime: str, dtype: str, device: str | None = None, kind: str | None = None) -> str:
    """``dtype`` if ``runtime`` (on ``device``, a ``kind`` device) runs it; otherwise a :class:`DtypeError` naming
    both."""
    ok = RUNTIME_DTYPES.get(runtime, ("fp32",))
    if dtype == "fp16" and dtype in ok and kind is not None and kind not in FP16_KINDS:
        raise DtypeError(f"runtime {runtime!r} on device {device!r} ({kind}) cannot run dtype 'fp16': XNNPACK's fp16 "
                         f"flag is set on {' and '.join(FP16_KINDS)} devices only; use --dtype fp32 or int8")
    if dtype not in ok:
        on = f" on device {device!r}" if device else ""
        raise DtypeError(f"runtime {runtime!r}{on} cannot run dtype {dtype!r}; it runs: {', '.join(ok)}"
                         + (" (fp16 is for LiteRT, where XNNPACK runs it)" if dtype == "fp16" else ""))
    return dtype


def check_lut_dtype(header: dict[str, Any], dtype: str | None, source: str = "LUT") -> str:
    """The LUT's dtype; a :class:`DtypeError` when the user asked for another one (an int8 LUT used as fp32)."""
    have = str(header.get("dtype", "fp32"))
    if dtype is not None and dtype != have:
        raise DtypeError(f"{source} was measured in {have}, not {dtype}; use an {dtype} LUT "
                         f"(fbnet-lut build --dtype {dtype}) or --dtype {have}")
    return have


def quantizer_info(fmt: str, dtype: str) -> dict[str, Any]:
    """Identity of the quantizer of ``fmt`` for ``dtype`` (empty for fp32): part of the cache path and settings."""
    if dtype == "fp32":
        return {}
    base = {"dtype": dtype, "qrecipe": _RECIPE}
    if dtype == "int8":
        base.update(calibration=DEFAULT_CALIBRATION, calibration_batches=CALIBRATION_BATCHES, io="int8")
        if fmt == "onnx":
            return {**base, "quantizer": "onnxruntime.quantization", "onnxruntime": _version("onnxruntime"),
                    "format": "qoperator", "activations": "uint8", "weights": "int8", "per_channel": True,
                    "io": "uint8"}
        return {**base, "quantizer": "litert-torch-pt2e", "torchao": _version("torchao"), "per_channel": True}
    if dtype == "fp16" and fmt == "tflite":
        return {**base, "quantizer": "ai-edge-quantizer", "ai_edge_quantizer": _version("ai-edge-quantizer"),
                "weights": "fp16", "inference": "xnnpack-force-fp16"}
    raise ExportError(f"no {dtype} export to {fmt}")


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "missing"


# ---- synthetic calibration data -----------------------------------------------------------------------------
def calibration_batches(shape: Sequence[int], kind: str = DEFAULT_CALIBRATION, n: int = CALIBRATION_BATCHES,
                        seed: int = 0) -> list[np.ndarray]:
    """``n`` float32 batches of ``shape`` (NCHW or NC): ``random`` (standard normal), ``constant`` (one value per
    batch) or ``smooth`` (low-frequency image-like fields: a few sinusoids per channel, plus a little noise)."""
    if kind not in CALIBRATION_DATA:
        raise ValueError(f"unknown calibration data {kind!r}; use one of {', '.join(CALIBRATION_DATA)}")
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    out = []
    for _ in range(n):
        if kind == "random":
            x = rng.standard_normal(shape)
        elif kind == "constant":
            x = np.full(shape, rng.uniform(-1, 1))
        else:
            x = _smooth(shape, rng)
        out.append(x.astype(np.float32))
    return out


def _smooth(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if len(shape) != 4:
        return np.cumsum(rng.standard_normal(shape), axis=-1) / np.sqrt(shape[-1])
    _, c, h, w = shape
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    x = np.zeros(shape)
    for ch in range(c):
        for _ in range(3):
            fy, fx, ph = rng.uniform(0.25, 1.5), rng.uniform(0.25, 1.5), rng.uniform(0, 2 * np.pi)
            x[0, ch] += np.sin(2 * np.pi * (fy * yy + fx * xx) + ph)
    return x / 1.5 + 0.05 * rng.standard_normal(shape)


# ---- ONNX Runtime ---------------------------------------------------------------------------------------------
def quantize_onnx(fp32: Path, out: Path, input_shape: Sequence[int], calibration: str = DEFAULT_CALIBRATION) -> Path:
    """Static QDQ int8 quantization of an fp32 ONNX model with int8 I/O; writes ``out``."""
    import onnx
    import onnxruntime
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    onnxruntime.set_default_logger_severity(3)  # calibration sessions warn about every unused initializer
    batches = calibration_batches(input_shape, calibration)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[np.ndarray] = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {name: x}

    name = onnx.load(str(fp32), load_external_data=False).graph.input[0].name
    pre = out.with_name(f".{out.name}.{os.getpid()}.pre.onnx")
    qdq = out.with_name(f".{out.name}.{os.getpid()}.qdq.onnx")
    try:
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        logging.disable(logging.WARNING)  # its advice to use QDQ is answered in the module docstring
        quantize_static(str(pre), str(qdq), Reader(), quant_format=QuantFormat.QOperator, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        model = onnx.load(str(qdq))
        _int8_io(model)
        onnx.save(model, str(out))
    finally:
        logging.disable(logging.NOTSET)
        for p in (pre, qdq):
            p.unlink(missing_ok=True)
    return out


def _int8_io(model: Any) -> None:
    """Make the graph's input and output 8-bit (uint8, the activations' type): strip the QuantizeLinear after the
    input and the DequantizeLinear before the output.

    Where the quantizer left the op in float (ONNX Runtime has no int8 ReduceMean, so a global pool stays fp32
    between int8 neighbours), insert the DequantizeLinear / QuantizeLinear that a whole quantized network runs
    around it instead, so the micro-model costs what the op costs inside the network.
    """
    from onnx import TensorProto, helper

    g = model.graph
    inp, outp = g.input[0], g.output[0]
    q = [n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] == inp.name]
    dq = [n for n in g.node if n.op_type == "DequantizeLinear" and n.output[0] == outp.name]
    if len(q) > 1 or len(dq) > 1:
        raise ExportError("quantized ONNX model has more than one quantize/dequantize pair at its boundary")
    if q and dq and len(g.node) == 2:
        raise ExportError("the quantizer left no op of this model in int8")
    g.initializer.extend([helper.make_tensor("_io_scale", TensorProto.FLOAT, [], [1 / 32]),
                          helper.make_tensor("_io_zero", TensorProto.UINT8, [], [128])])
    if q:
        g.node.remove(q[0])
        _replace(g, q[0].output[0], inp.name)
    else:
        _replace(g, inp.name, "_io_input_fp32")
        g.node.insert(0, helper.make_node("DequantizeLinear", [inp.name, "_io_scale", "_io_zero"],
                                          ["_io_input_fp32"], name="_io_dequantize"))
    if dq:
        g.node.remove(dq[0])
        _replace(g, dq[0].input[0], outp.name)
    else:
        _replace(g, outp.name, "_io_output_fp32")
        g.node.append(helper.make_node("QuantizeLinear", ["_io_output_fp32", "_io_scale", "_io_zero"],
                                       [outp.name], name="_io_quantize"))
    inp.type.tensor_type.elem_type = TensorProto.UINT8
    outp.type.tensor_type.elem_type = TensorProto.UINT8


def _replace(g: Any, old: str, new: str) -> None:
    """Rename tensor ``old`` to ``new`` wherever a node reads or writes it."""
    for n in g.node:
        for names in (n.input, n.output):
            for i, name in enumerate(names):
                if name == old:
                    names[i] = new


def ort_kernels(path: Path, threads: int = 1) -> Counter:
    """The op types ONNX Runtime runs for ``path`` after its graph optimizations (``domain:op`` -> count)."""
    import onnx
    import onnxruntime as ort

    opt = path.with_name(f".{path.name}.{os.getpid()}.optimized.onnx")
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(opt)
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    try:
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return Counter(f"{n.domain + ':' if n.domain else ''}{n.op_type}" for n in onnx.load(str(opt)).graph.node)
    finally:
        opt.unlink(missing_ok=True)


# ---- LiteRT ---------------------------------------------------------------------------------------------------
def quantize_tflite(module: Any, sample: Any, out: Path, args: list[int], outs: list[int],
                    calibration: str = DEFAULT_CALIBRATION) -> None:
    """Full-integer PT2E quantization (XNNPACK quantizer) of a torch module to TFLite with int8 I/O.

    ``sample`` is the NCHW (or NC) float sample; ``args``/``outs`` name the 4-D inputs/outputs made NHWC.
    """
    import litert_torch
    import torch
    from litert_torch.quantize import pt2e_quantizer as pq
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import quantize_pt2e

    wrapped = litert_torch.to_channel_last_io(module, args=args, outputs=outs) if (args or outs) else module
    nhwc = (lambda t: t.permute(0, 2, 3, 1).contiguous()) if args else (lambda t: t)
    x = nhwc(sample)
    graph = torch.export.export(wrapped.eval(), (x,)).module()
    quantizer = _elementwise_quantizer(pq).set_global(pq.get_symmetric_quantization_config(is_per_channel=True,
                                                                                            is_dynamic=False))
    graph = quantize_pt2e.prepare_pt2e(graph, quantizer)
    for b in calibration_batches(tuple(sample.shape), calibration):
        graph(nhwc(torch.from_numpy(b)))
    graph = quantize_pt2e.convert_pt2e(graph, fold_quantize=False)
    litert_torch.convert(graph, (x,), quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(out))


def _elementwise_quantizer(pq: Any) -> Any:
    """litert-torch's PT2E quantizer, also annotating the residual add and the SE multiply.

    Its own add/mul annotators find ops by ``source_fn_stack``, which torch.export (torch 2.13) no longer records
    for ``x + y``; left alone, every residual add would run in fp32 between a DEQUANTIZE and a QUANTIZE.
    """
    import torch
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
    from torchao.quantization.pt2e.quantizer.utils import get_input_act_qspec, get_output_act_qspec

    elementwise = (torch.ops.aten.add.Tensor, torch.ops.aten.mul.Tensor)

    class Quantizer(pq.PT2EQuantizer):
        def annotate(self, model: Any) -> Any:
            model = super().annotate(model)
            cfg = self.global_config
            for n in model.graph.nodes:
                if n.target in elementwise and "quantization_annotation" not in n.meta and all(
                        isinstance(a, torch.fx.Node) for a in n.args[:2]):
                    n.meta["quantization_annotation"] = QuantizationAnnotation(
                        input_qspec_map={a: get_input_act_qspec(cfg) for a in n.args[:2]},
                        output_qspec=get_output_act_qspec(cfg), _annotated=True)
            return model

    return Quantizer()


def fp16_tflite(fp32: Path, out: Path) -> None:
    """The fp32 flatbuffer ``fp32`` with fp16 conv / fully-connected weights (each feeding its op through a
    DEQUANTIZE, which XNNPACK folds into the weights), written to ``out``."""
    from ai_edge_quantizer import qtyping, quantizer
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    q = quantizer.Quantizer(str(fp32))
    for op in FP16_WEIGHT_OPS:
        q.add_weight_only_config(".*", getattr(qtyping.TFLOperationName, op), 16,
                                 algorithm_key=AlgorithmName.FLOAT_CASTING)
    q.quantize().export_model(str(out), overwrite=True)


def tflite_ops(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """Each op of a .tflite model with the dtypes of its inputs (read from the model, no delegate applied)."""
    from ai_edge_litert import interpreter

    it = interpreter.Interpreter(model_path=str(path), num_threads=1, experimental_op_resolver_type=(
        interpreter.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    tensors = it.get_tensor_details()
    by_index = {t["index"]: t for t in tensors}
    return [(o["op_name"], tuple(np.dtype(by_index[i]["dtype"]).name for i in o["inputs"] if i >= 0))
            for o in it._get_ops_details()]


def xnnpack_partitions(path: Path, threads: int = 1) -> int:
    """How many subgraphs the XNNPACK delegate took over in ``path`` (0: XNNPACK runs none of it)."""
    from ai_edge_litert import interpreter

    it = interpreter.Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    return sum(o["op_name"] == "DELEGATE" for o in it._get_ops_details())
