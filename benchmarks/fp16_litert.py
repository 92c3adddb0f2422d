"""fp16 against fp32 on LiteRT (XNNPACK), per op and per whole network (FBNet-A/B/C), on this machine's CPU.

The fp16 artifacts are what ``build --dtype fp16`` measures (fp16 weights, XNNPACK's FORCE_FP16 flag, run through
``LiteRTBackend.compiled_fp16``); fp32 is timed both as a build times it (the Interpreter) and through the same
CompiledModel API as fp16, which the ratio compares. Interleaved rounds, 1 thread; the noise (spread of round
medians) is given beside each ratio, and the largest output deviation of fp16 from fp32 (relative to the output's
range) shows that fp16 inference really ran.

    flock /tmp/fbnet-bench.lock env PYTHONPATH=$PWD python benchmarks/fp16_litert.py [--rounds 5]
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from int8_calibration_data import BLOCKS, interleaved, runner, speed_args, speed_units  # noqa: E402

from latency_lut.backends.local_litert import LiteRTBackend  # noqa: E402
from latency_lut.export import export_spec  # noqa: E402
from latency_lut.ops import OpSpec  # noqa: E402
from latency_lut.quantize import XNNPACK_FLAGS_DEFAULT, XNNPACK_FLAGS_FP16  # noqa: E402


def cpu_flags() -> str:
    flags = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else set()
    return ", ".join(f for f in ("f16c", "avx2", "avx512f", "avx512fp16", "fphp", "asimdhp") if f in flags) or "?"


def main() -> None:
    args = speed_args()
    units = speed_units(args.resolution)
    backend = LiteRTBackend()
    backend.dtype = "fp16"
    rows = []
    with contextlib.ExitStack() as stack:
        for name, unit in units:
            fp32 = export_spec(unit, "tflite")
            fns = {"fp32": runner(fp32),
                   "fp32c": stack.enter_context(backend.compiled(fp32, XNNPACK_FLAGS_DEFAULT)),
                   "fp16": stack.enter_context(backend.compiled_fp16(export_spec(unit, "tflite", dtype="fp16")))}
            runs = args.runs if isinstance(unit, OpSpec) else max(5, args.runs // 5)
            m, noise = interleaved(fns, runs, args.rounds)
            rows.append([name, m["fp32"], m["fp32c"], m["fp16"], m["fp16"] / m["fp32c"], noise])
            print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    print(f"CPU flags: {cpu_flags()}\n")
    print("| unit | fp32 ms (Interpreter) | fp32 ms (CompiledModel) | fp16 ms (CompiledModel, FORCE_FP16) | "
          "fp16 / fp32 | noise |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| `{r[0]}` | {r[1]:.3f} | {r[2]:.3f} | {r[3]:.3f} | {r[4]:.2f}x | {100 * r[5]:.1f}% |")
    print(f"\nfp16 output deviation from fp32 (one block, max |diff| / max |fp32|): {deviation():.1e}")
    print(f"\nreproduce: flock /tmp/fbnet-bench.lock env PYTHONPATH=$PWD python benchmarks/fp16_litert.py "
          f"--rounds {args.rounds} --runs {args.runs} --resolution {args.resolution}")


def deviation() -> float:
    from ai_edge_litert import options
    from ai_edge_litert.compiled_model import CompiledModel

    from latency_lut.export import _quiet_native_output

    spec = OpSpec.from_key(BLOCKS[3])
    x = np.random.default_rng(0).standard_normal((1, 14, 14, 112)).astype(np.float32)
    it = LiteRTBackend().interpreter(export_spec(spec, "tflite"))
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    ref = it.get_tensor(it.get_output_details()[0]["index"])
    with _quiet_native_output():
        m = CompiledModel.from_file(str(export_spec(spec, "tflite", dtype="fp16")), options=options.Options(
            cpu_options=options.CpuOptions(num_threads=1, xnnpack_flags=XNNPACK_FLAGS_FP16)))
        ins, outs = m.create_input_buffers(0), m.create_output_buffers(0)
        ins[0].write(x)
        m.run_by_index(0, ins, outs)
    out = outs[0].read(x.size, np.float32).reshape(x.shape)
    return float(np.abs(out - ref).max() / np.abs(ref).max())


if __name__ == "__main__":
    main()
