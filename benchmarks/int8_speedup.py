"""int8 against fp32, per op and per whole network (FBNet-A/B/C at 224), on ONNX Runtime and LiteRT (XNNPACK).

Artifacts come from the same exporters a build uses (``export_spec`` with ``dtype``; whole networks quantized
whole); fp32 and int8 are timed in interleaved rounds on one thread, and the noise (spread of round medians) is
given beside each speedup.

    flock /tmp/fbnet-bench.lock env PYTHONPATH=$PWD python benchmarks/int8_speedup.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from int8_calibration_data import BLOCKS, median_ms, runner  # noqa: E402

from latency_lut.export import export_spec  # noqa: E402
from latency_lut.networks import NetworkSpec  # noqa: E402
from latency_lut.ops import OpSpec  # noqa: E402
from latency_lut.spaces import get_space  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--resolution", type=int, default=224)
    args = ap.parse_args()
    space = get_space("fbnet", args.resolution)
    units = [(k, OpSpec.from_key(k)) for k in BLOCKS]
    units += [(name, NetworkSpec(space, space.parse_arch(name), name)) for name in sorted(space.archs)]
    rows = []
    for fmt in ("onnx", "tflite"):
        for name, unit in units:
            fns = {d: runner(export_spec(unit, fmt, dtype=d)) for d in ("fp32", "int8")}
            runs = args.runs if isinstance(unit, OpSpec) else max(5, args.runs // 5)
            meds: dict[str, list[float]] = {d: [] for d in fns}
            for r in range(args.rounds):
                for d in (fns if r % 2 == 0 else reversed(list(fns))):
                    meds[d].append(median_ms(fns[d], runs))
            m = {d: statistics.median(v) for d, v in meds.items()}
            noise = max((max(v) - min(v)) / statistics.median(v) for v in meds.values())
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
