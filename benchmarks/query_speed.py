"""How fast a LUT answers queries: batch prediction (architectures per second) and the expected-latency term of a
DNAS step (forward + backward, microseconds).

    python benchmarks/query_speed.py                     # synthetic FBNet-224 LUT (values do not affect speed)
    python benchmarks/query_speed.py --lut profiles/local-onnxruntime-224.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch

from latency_lut import load
from latency_lut.dnas import LatencyTable
from latency_lut.predict import arch_table, predict
from latency_lut.spaces import get_space
from latency_lut.synthetic import synthetic_lut


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def step_us(table: LatencyTable, device: str, dtype: torch.dtype, batch: int, iters: int) -> float:
    """Median time of softmax(theta) -> expected latency -> backward, in microseconds."""
    shape = (batch, *table.shape) if batch > 1 else table.shape
    theta = torch.zeros(shape, device=device, dtype=dtype, requires_grad=True)
    samples = []
    for i in range(iters + 20):
        t0 = time.perf_counter()
        lat = table.expected(torch.softmax(theta, -1)).sum()
        lat.backward()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 20:
            samples.append((time.perf_counter() - t0) * 1e6)
        theta.grad = None
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lut", default=None, help="LUT file [default: a synthetic FBNet-224 LUT]")
    ap.add_argument("--n", type=int, default=1_000_000, help="architectures per batch query")
    args = ap.parse_args()
    torch.set_num_threads(1)
    lut = load(args.lut) if args.lut else synthetic_lut(get_space("fbnet", 224))
    table = arch_table(lut)
    rng = np.random.default_rng(0)
    rows = []
    for dtype in (np.int64, np.int32, np.uint8):
        archs = rng.integers(0, table.table.shape[1], size=(args.n, table.table.shape[0])).astype(dtype)
        sec = best_of(lambda a=archs: table.predict(a), 5)
        case = f"{args.n:,} archs, {np.dtype(dtype).name}"
        rows.append(("predict_batch", case, f"{args.n / sec / 1e6:.1f} M arch/s"))
    single = best_of(lambda: [predict(lut, "fbnet_b") for _ in range(200)], 3) / 200
    rows.append(("predict (one arch, breakdown)", "fbnet_b", f"{single * 1e6:.0f} us"))
    lt = LatencyTable.from_lut(lut)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for dtype in (torch.float32, torch.float64):
            for batch in (1, 64):
                us = step_us(lt, device, dtype, batch, 2000)
                rows.append(("expected latency fwd+bwd", f"{device} {str(dtype)[6:]} theta x{batch}", f"{us:.1f} us"))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    heads = ("query", "case", "speed")
    w = [max(a, len(h)) for a, h in zip(w, heads)]
    print("  ".join(h.ljust(x) for h, x in zip(heads, w)))
    print("  ".join("-" * x for x in w))
    for r in rows:
        print(f"{r[0].ljust(w[0])}  {r[1].ljust(w[1])}  {r[2].rjust(w[2])}")
    print(f"\n({torch.__version__}, numpy {np.__version__}, 1 torch thread; "
          f"reproduce: python benchmarks/query_speed.py{' --lut ' + args.lut if args.lut else ''})")
    ok = all(float(r[2].split()[0]) >= 5 for r in rows if r[0] == "predict_batch" and "int64" in r[1])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
