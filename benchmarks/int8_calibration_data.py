"""Do int8 timings depend on the calibration data? random vs constant vs smooth (image-like) inputs.

Each block is quantized three times, once per kind of synthetic calibration data, for ONNX Runtime (static,
QOperator u8s8) and LiteRT (PT2E full-integer, XNNPACK); the three artifacts are then timed in interleaved rounds
(one thread). The difference between kinds is reported beside the noise: the spread of one artifact's round
medians. A difference inside the noise means the default (``random``) does not matter for latency.

    flock /tmp/fbnet-bench.lock env PYTHONPATH=$PWD python benchmarks/int8_calibration_data.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from latency_lut.backends.base import sample_input
from latency_lut.export import _quiet_native_output, export_module
from latency_lut.ops import OpSpec
from latency_lut.quantize import CALIBRATION_DATA, quantize_onnx, quantize_tflite

BLOCKS = ["conv-in224x224x3-out16-k3-s2", "ir-in56x56x24-out24-k3-e6-g1-s1", "ir-in28x28x32-out64-k5-e6-g1-s2",
          "ir-in14x14x112-out112-k5-e6-g1-s1", "conv-in7x7x352-out1984-k1-s1"]


def build(spec: OpSpec, kind: str, fmt: str, out: Path) -> Path:
    import torch

    path = out / f"{spec.key}-{kind}.{fmt}"
    if fmt == "onnx":
        fp32 = export_module(spec.build_module(), spec.input_shape, "onnx", out / f"{spec.key}.onnx")
        return quantize_onnx(fp32, path, spec.input_shape, kind)
    from latency_lut.blocks import use_channels_last

    module = spec.build_module().eval()
    use_channels_last(module)  # as the exporter does
    with _quiet_native_output(), torch.no_grad():
        quantize_tflite(module, torch.randn(*spec.input_shape), path, [0], [0], kind)
    return path


def runner(path: Path):
    if path.suffix == ".onnx":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = 1, 1, 3
        s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        i = s.get_inputs()[0]
        feed = {i.name: sample_input(i.shape, np.uint8 if i.type == "tensor(uint8)" else np.float32)}
        return lambda: s.run(None, feed)
    from ai_edge_litert import interpreter

    it = interpreter.Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], sample_input(d["shape"], d["dtype"]))
    return it.invoke


def median_ms(fn, runs: int) -> float:
    for _ in range(3):
        fn()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1e3 * statistics.median(ts)


def speed_args() -> argparse.Namespace:
    """The options of the dtype-against-fp32 speed benchmarks (int8_speedup, fp16_litert)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--resolution", type=int, default=224)
    return ap.parse_args()


def speed_units(resolution: int) -> list[tuple[str, object]]:
    """BLOCKS as op specs, then FBNet's named networks at ``resolution``."""
    from latency_lut.networks import NetworkSpec
    from latency_lut.spaces import get_space

    space = get_space("fbnet", resolution)
    return [(k, OpSpec.from_key(k)) for k in BLOCKS] + \
        [(name, NetworkSpec(space, space.parse_arch(name), name)) for name in sorted(space.archs)]


def interleaved(fns: dict, runs: int, rounds: int) -> tuple[dict[str, float], float]:
    """Median ms of each runner over ``rounds`` rounds (order reversed every other round), and the noise: the
    largest spread of a runner's round medians relative to their median."""
    meds: dict[str, list[float]] = {d: [] for d in fns}
    for r in range(rounds):
        for d in (fns if r % 2 == 0 else reversed(list(fns))):
            meds[d].append(median_ms(fns[d], runs))
    noise = max((max(v) - min(v)) / statistics.median(v) for v in meds.values())
    return {d: statistics.median(v) for d, v in meds.items()}, noise


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=40)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("onnx", "tflite"):
            for key in BLOCKS:
                spec = OpSpec.from_key(key)
                fns = {k: runner(build(spec, k, fmt, Path(tmp))) for k in CALIBRATION_DATA}
                meds: dict[str, list[float]] = {k: [] for k in fns}
                for r in range(args.rounds):
                    order = list(fns) if r % 2 == 0 else list(reversed(fns))
                    for k in order:
                        meds[k].append(median_ms(fns[k], args.runs))
                m = {k: statistics.median(v) for k, v in meds.items()}
                noise = max((max(v) - min(v)) / statistics.median(v) for v in meds.values())
                diff = (max(m.values()) - min(m.values())) / m["random"]
                rows.append([fmt, key, *(m[k] for k in CALIBRATION_DATA), diff, noise])
                print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    head = ["runtime", "block", *(f"{k} ms" for k in CALIBRATION_DATA), "max diff", "noise"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print(f"| {r[0]} | `{r[1]}` | " + " | ".join(f"{x:.3f}" for x in r[2:5]) + f" | {100 * r[5]:.1f}% | "
              f"{100 * r[6]:.1f}% |")
    within = sum(r[5] <= r[6] for r in rows)
    print(f"\n{within}/{len(rows)} blocks: the difference between calibration data is within the noise "
          "(noise = largest (max-min)/median of one artifact's round medians).")
    print(f"\nreproduce: flock /tmp/fbnet-bench.lock env PYTHONPATH=$PWD python benchmarks/int8_calibration_data.py "
          f"--rounds {args.rounds} --runs {args.runs}")


if __name__ == "__main__":
    main()
