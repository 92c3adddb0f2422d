"""Cold and warm build time of whole search spaces on the local CPU, per runtime.

Cold: an empty artifact cache and an empty store (every op exported and measured). Warm: the same command again
(everything reused). Each build is a real `fbnet-lut build` subprocess, timed from outside.

    python benchmarks/build_speed.py [--runtimes onnxruntime,litert] [--spaces fbnet,ofa_mbv3] [--resolution 224]
        [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed_build(runtime: str, space: str, resolution: int, jobs: int, work: Path) -> tuple[float, dict]:
    env = dict(os.environ, PYTHONPATH=str(REPO), FBNET_LUT_CACHE=str(work / "cache"),
               FBNET_LUT_STORE=str(work / "store.sqlite"))
    cmd = [sys.executable, "-m", "latency_lut", "build", "--device", "local", "--runtime", runtime, "--space", space,
           "--resolution", str(resolution), "--jobs", str(jobs), "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"build failed: {proc.stderr.strip()}")
    return wall, json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runtimes", default="onnxruntime,litert")
    ap.add_argument("--spaces", default="fbnet", help="built-in space names or space files, comma-separated")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--jobs", type=int, default=2, help="export processes (LiteRT exports take seconds each)")
    args = ap.parse_args()
    rows = []
    for space in args.spaces.split(","):
        for rt in args.runtimes.split(","):
            with tempfile.TemporaryDirectory(prefix=f"bench-{rt}-") as d:
                cold, s1 = timed_build(rt, space, args.resolution, args.jobs, Path(d))
                warm, s2 = timed_build(rt, space, args.resolution, args.jobs, Path(d))
            rows.append((space, rt, s1["entries"], cold, s1["export_seconds"], s1["measure_seconds"], warm,
                         s2["measured"]))
    hdr = (f"{'space':<14} {'runtime':<12} {'ops':>4} {'cold s':>8} {'export s':>9} {'measure s':>10} {'warm s':>7} "
           f"{'re-measured':>12}")
    print(hdr)
    print("-" * len(hdr))
    for space, rt, n, cold, ex, me, warm, rem in rows:
        print(f"{space:<14} {rt:<12} {n:>4} {cold:>8.1f} {ex:>9.1f} {me:>10.1f} {warm:>7.2f} {rem:>12}")
    print(f"\nAt resolution {args.resolution}, 1 thread, {os.cpu_count()} CPUs. Reproduce with:")
    print(f"  python benchmarks/build_speed.py --runtimes {args.runtimes} --spaces {args.spaces} "
          f"--resolution {args.resolution} --jobs {args.jobs}")


if __name__ == "__main__":
    main()
