"""int8 against fp32, per op and per whole network (FBNet-A/B/C at 224), on ONNX Runtime and LiteRT (XNNPACK).

Artifacts come from the same exporters a build uses (``export_spec`` with ``dtype``; whole networks quantized
whole); fp32 and int8 are timed in interleaved rounds on one thread, and the noise (spread of round medians) is
given beside each speedup.

    flock /tmp/fbnet-bench.lock env PYTHONPATH=$PWD python benchmarks/int8_speedup.py [--rounds 5]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from int8_calibration_data import interleaved, runner, speed_args, speed_units  # noqa: E402

from latency_lut.export import export_spec  # noqa: E402
from latency_lut.ops import OpSpec  # noqa: E402


def main() -> None:
    args = speed_args()
    units = speed_units(args.resolution)
    rows = []
    for fmt in ("onnx", "tflite"):
        for name, unit in units:
            fns = {d: runner(export_spec(unit, fmt, dtype=d)) for d in ("fp32", "int8")}
            runs = args.runs if isinstance(unit, OpSpec) else max(5, args.runs // 5)
            m, noise = interleaved(fns, runs, args.rounds)
            rows.append([fmt, name, m["fp32"], m["int8"], m["fp32"] / m["int8"], noise])
            print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    print("| runtime | unit | fp32 ms | int8 ms | speedup | noise |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | `{r[1]}` | {r[2]:.3f} | {r[3]:.3f} | {r[4]:.2f}x | {100 * r[5]:.1f}% |")
    print(f"\nreproduce: flock /tmp/fbnet-bench.lock env PYTHONPATH=$PWD python benchmarks/int8_speedup.py "
          f"--rounds {args.rounds} --runs {args.runs} --resolution {args.resolution}")


if __name__ == "__main__":
    main()
