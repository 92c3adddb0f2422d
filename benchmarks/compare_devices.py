"""This machine's CPU against HW-NAS-Bench's Pixel 3 and Raspberry Pi 4 on the FBNet space at 224, and the cost of
an import and of ``compare``.

    fbnet-lut build --runtime onnxruntime && fbnet-lut build --runtime litert     # the local LUTs, once
    python benchmarks/compare_devices.py --plot docs/compare-devices.png

Prints the rank agreement of 10,000 sampled architectures for every pair (markdown, for the README), the ops whose
relative cost differs most between the local CPU and the phones, and the time of one import (target <= 1 s) and of
one compare of 3 LUTs x 10,000 architectures (target <= 2 s; best of 5, scipy already imported).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from latency_lut import load
from latency_lut.interop import import_lut
from latency_lut.interop.compare import compare, scatter_png

DATA = Path(__file__).resolve().parents[1] / "tests" / "interop" / "data" / "hwnasbench_fbnet"


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("luts", nargs="*", default=["profiles/local-onnxruntime-224.json",
                                                "profiles/local-litert-224.json"],
                    help="local LUTs of fbnet-224 [default: the two that 'fbnet-lut build' writes]")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", default=None, help="scatter PNG to write")
    args = ap.parse_args()

    t_import, pixel3 = best_of(lambda: import_lut("hwnasbench", [DATA / "pixel3_latency_224.json"]), 5)
    raspi4 = import_lut("hwnasbench", [DATA / "raspi4_latency_224.json"])
    pixel3.path, raspi4.path = Path("pixel3 (HW-NAS-Bench)"), Path("raspi4 (HW-NAS-Bench)")
    local = []
    for p in args.luts:
        lut = load(p)
        lut.path = Path(f"this CPU, {lut.header['runtime']}")
        local.append(lut)
    luts = [*local, pixel3, raspi4]
    compare(luts[:3], n=100)  # imports scipy once, outside the timing
    t_compare, _ = best_of(lambda: compare(luts[:3], n=10000, seed=args.seed), 5)
    cmp = compare(luts, n=args.n, seed=args.seed)

    print(f"{cmp.n} architectures of {cmp.space}, seed {cmp.seed}; local LUTs: {', '.join(args.luts)}\n")
    print("| LUT a | LUT b | Kendall tau | Spearman | top-1% overlap |")
    print("|---|---|---|---|---|")
    for p in cmp.pairs:
        print(f"| {cmp.names[p.a]} | {cmp.names[p.b]} | {p.kendall_tau:.3f} | {p.spearman:.3f} | "
              f"{p.top_overlap:.0%} |")
    print(f"\nops relatively slowest / fastest on the phones against {cmp.names[0]} (relative ratio):")
    ph = [i for i, n in enumerate(cmp.names) if "HW-NAS-Bench" in n]
    rows = sorted(cmp.ops, key=lambda r: r.relative[ph[0]])
    for r in [*rows[:4], *rows[-4:]]:
        print(f"  {r.op:<36} " + "  ".join(f"{cmp.names[i]} {r.relative[i]:.2f}" for i in ph))
    print(f"\nimport (hwnasbench, 112 entries): {t_import * 1e3:.1f} ms (target <= 1000 ms)")
    print(f"compare, 3 LUTs x 10000 architectures: {t_compare * 1e3:.0f} ms (target <= 2000 ms)")
    if args.plot:
        scatter_png(cmp, args.plot)
        print(f"plot: {args.plot}")
    print("\nreproduce: python " + " ".join(shlex.quote(a) for a in sys.argv))


if __name__ == "__main__":
    main()
