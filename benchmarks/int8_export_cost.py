"""Cold export cost of int8 against fp32: the part of a cold build that quantization adds (measurement is the same).

A sample of FBNet ops at 224 is exported into an empty cache, fp32 then int8, per format, one process.

    flock /tmp/fbnet-bench.lock env PYTHONPATH=$PWD python benchmarks/int8_export_cost.py [--ops 8]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from latency_lut.export import export_spec
from latency_lut.spaces import get_space


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", type=int, default=8)
    args = ap.parse_args()
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


if __name__ == "__main__":
    main()
