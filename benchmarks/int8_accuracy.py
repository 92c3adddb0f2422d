"""Held-out accuracy of int8 LUTs: a calibrated int8 LUT against whole quantized networks it never saw.

Per runtime (ONNX Runtime and LiteRT/XNNPACK, 1 thread, this machine's CPU), exactly as a user runs it:

  1. ``fbnet-lut build --dtype int8`` into a fresh store: quantized micro-models timed in interleaved rounds, then
     the build's calibration pass (named FBNet-A/B/C plus sampled networks of the calibration seed, whole int8
     networks), whose fit goes into the LUT header;
  2. ``fbnet-lut validate`` of that LUT on ``--n`` random architectures of ``--seed`` (0; the calibration pass
     samples seed 7000001, and models it was fitted on are not scored): held-out archs, whole int8 networks
     exported and measured end to end.

The table gives, per runtime, the calibration (models, its own k-fold score), then the held-out share within
+-10% / +-5%, RMSPE and mean error of the calibrated LUT and of its plain sum, beside the measurement noise (the
spread of a model's round medians, and the odd-vs-even-round agreement that bounds any predictor on this host).

    flock /tmp/fbnet-bench.lock env PYTHONPATH=$PWD python benchmarks/int8_accuracy.py --runtimes onnxruntime
    flock /tmp/fbnet-bench.lock env PYTHONPATH=$PWD python benchmarks/int8_accuracy.py --runtimes litert --n 20

The export cache is the user's (a rerun re-exports nothing); the store is fresh each run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "latency_lut", *args, "--json"], text=True, capture_output=True,
                          env=env)
    if proc.returncode != 0:
        raise SystemExit(f"fbnet-lut {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def run(rt: str, args: argparse.Namespace, out: Path) -> dict:
    store, lut = out / f"store-{rt}.sqlite", out / f"lut-{rt}-int8.json"
    for p in (store, Path(f"{store}-wal"), Path(f"{store}-shm"), lut):
        p.unlink(missing_ok=True)
    t0 = time.time()
    load0 = os.getloadavg()[0]
    build = cli("build", "--runtime", rt, "--dtype", "int8", "--resolution", str(args.resolution), "--store",
                str(store), "-o", str(lut), "--jobs", str(args.jobs), "-q", "--calibration-models",
                str(args.cal_models), "--calibration-budget", str(args.cal_budget))
    t1 = time.time()
    val = cli("validate", "--lut", str(lut), "--store", str(store), "--n", str(args.n), "--seed", str(args.seed),
              "--rounds", str(args.rounds), "--jobs", str(args.jobs), "-q", "--csv", str(out / f"val-{rt}.csv"))
    t2 = time.time()
    (out / f"result-{rt}.json").write_text(json.dumps({"build": build, "validate": val}, indent=1))
    s = val["summary"]
    return {"rt": rt, "build": build, "summary": s, "build_s": t1 - t0, "validate_s": t2 - t1,
            "load": (load0, os.getloadavg()[0])}


def pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtimes", default="onnxruntime,litert")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--n", type=int, default=30, help="held-out random architectures")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cal-models", type=int, default=40, help="the build's --calibration-models")
    ap.add_argument("--cal-budget", type=float, default=0.3, help="the build's --calibration-budget")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("/tmp/fbnet-int8-accuracy"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    res = []
    for rt in args.runtimes.split(","):
        print(f"[{rt}] build --dtype int8, then validate seed {args.seed}", file=sys.stderr, flush=True)
        res.append(run(rt, args, args.out))
    print(f"\nint8 LUTs, FBNet at {args.resolution}, 1 thread; held out: {args.n} random archs of seed {args.seed}, "
          f"{args.rounds} rounds\n")
    print("| runtime | calibration | held out | within +-10% | within +-5% | RMSPE | mean error | plain sum within "
          "+-10% (mean error) | noise median / p90 | odd-vs-even tau | build s | validate s | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in res:
        s, c = r["summary"], r["build"]["calibration"]
        a, p, nz = s.get("accuracy") or {}, s.get("plain_sum") or {}, s.get("noise") or {}
        cal = (f"{c['models']} models, CV {pct(c['cv_within_10'])}" if c.get("status") == "fitted"
               else c["status"][:40])
        print(f"| {r['rt']} | {cal} | {s['held_out']} | {pct(a.get('within_10'))} | {pct(a.get('within_5'))} | "
              f"{pct(a.get('rmspe'))} | {100 * a.get('mean_error', 0):+.1f}% | {pct(p.get('within_10'))} "
              f"({100 * p.get('mean_error', 0):+.1f}%) | {pct(nz.get('median'))} / {pct(nz.get('p90'))} | "
              f"{nz.get('split_tau', float('nan')):.2f} | {r['build_s']:.0f} | {r['validate_s']:.0f} | "
              f"{r['load'][0]:.1f}-{r['load'][1]:.1f} |")
    print(f"\nreproduce: flock /tmp/fbnet-bench.lock env PYTHONPATH=$PWD python benchmarks/int8_accuracy.py "
          f"--runtimes {args.runtimes} --resolution {args.resolution} --n {args.n} --seed {args.seed} "
          f"--rounds {args.rounds} --cal-models {args.cal_models} --cal-budget {args.cal_budget} --jobs {args.jobs}")


if __name__ == "__main__":
    main()
