"""Cold cost of int8 against fp32: the exports alone, and whole cold builds.

``--part exports``: a sample of FBNet ops at 224 is exported into an empty cache, fp32 then int8, per format, one
process (the part of a cold build that quantization adds; measurement is the same work).

``--part build``: ``fbnet-lut build --runtime litert`` of the whole FBNet space at 224, cold (an empty artifact cache
and an empty store each), fp32 then int8, with the CLI's defaults (3 rounds, drift guard, the calibration pass)
and ``--jobs``; the target is int8 <= 2x fp32.

    flock /tmp/fbnet-bench.lock env PYTHONPATH=$PWD python benchmarks/int8_export_cost.py [--ops 8]
    flock /tmp/fbnet-bench.lock env PYTHONPATH=$PWD python benchmarks/int8_export_cost.py --part build --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from latency_lut.export import export_spec
from latency_lut.spaces import get_space

REPO = Path(__file__).resolve().parents[1]


def exports(args: argparse.Namespace) -> None:
    specs = [s for s in get_space("fbnet", 224).unique_specs() if not s.is_identity]
    sample = random.Random(0).sample(specs, args.ops)
    print("| format | fp32 s/op | int8 s/op | ratio |\n|---|---|---|---|")
    for fmt in ("onnx", "tflite"):
        with tempfile.TemporaryDirectory() as tmp:
            t = {}
            for dtype in ("fp32", "int8"):
                root = Path(tmp) / dtype  # a cold cache each: ONNX int8 pays its own fp32 export too
                t0 = time.perf_counter()
                for s in sample:
                    export_spec(s, fmt, root, dtype)
                t[dtype] = (time.perf_counter() - t0) / len(sample)
        print(f"| {fmt} | {t['fp32']:.2f} | {t['int8']:.2f} | {t['int8'] / t['fp32']:.2f}x |")
    print(f"\nreproduce: flock /tmp/fbnet-bench.lock env PYTHONPATH=$PWD python benchmarks/int8_export_cost.py "
          f"--ops {args.ops}")


def builds(args: argparse.Namespace) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in args.dtypes.split(","):
            work = Path(tmp) / dtype
            work.mkdir()
            env = {**os.environ, "FBNET_LUT_CACHE": str(work / "cache"),
                   "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "latency_lut", "build", "--runtime", "litert", "--dtype",
                                   dtype, "--resolution", str(args.resolution), "--store", str(work / "s.sqlite"),
                                   "-o", str(work / "lut.json"), "--jobs", str(args.jobs), "-q", "--json"],
                                  env=env, text=True, capture_output=True)
            wall = time.perf_counter() - t0
            if proc.returncode:
                raise SystemExit(f"{dtype} build failed:\n{proc.stderr[-2000:]}")
            s = json.loads(proc.stdout)
            cal = s["calibration"]
            rows.append([dtype, wall, s["export_seconds"], s["measure_seconds"], cal.get("seconds"),
                         cal.get("models"), s["entries"], load, os.getloadavg()[0]])
            print(f"[{dtype}] {wall:.0f} s", file=sys.stderr, flush=True)
    print(f"Cold `fbnet-lut build --runtime litert` of FBNet at {args.resolution}, --jobs {args.jobs}:\n")
    print("| dtype | total s | export s | measure s | calibration s (models) | entries | load before-after |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.0f} | {r[2]:.0f} | {r[3]:.0f} | {r[4] or 0:.0f} ({r[5] or 0}) | {r[6]} | "
              f"{r[7]:.1f}-{r[8]:.1f} |")
    if len(rows) == 2:
        print(f"\n{rows[1][0]} / {rows[0][0]}: {rows[1][1] / rows[0][1]:.2f}x total, "
              f"{rows[1][2] / max(rows[0][2], 1e-9):.2f}x export")
    print(f"\nreproduce: flock /tmp/fbnet-bench.lock env PYTHONPATH=$PWD python benchmarks/int8_export_cost.py "
          f"--part build --dtypes {args.dtypes} --resolution {args.resolution} --jobs {args.jobs}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("exports", "build"), default="exports")
    ap.add_argument("--ops", type=int, default=8)
    ap.add_argument("--dtypes", default="fp32,int8")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    (builds if args.part == "build" else exports)(args)


if __name__ == "__main__":
    main()
