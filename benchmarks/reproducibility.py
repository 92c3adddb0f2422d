"""Is a LUT, as `build` leaves it, reproducible and accurate? Before (one pass) against after (rounds, drift guard,
calibration), wall clock against thread_cpu, a CPU hog with and without the drift guard. One run, one machine.

Parts (all by default; the configurations of a part are interleaved, so slow phases of a shared host hit each alike):
  repro     two cold builds per configuration, each into its own fresh store (exports come from the warm artifact
            cache; all of them are made before anything is timed): per-entry |difference| (median, p90), the
            largest difference of the FBNet-A/B/C predictions, build time, calibration pass time and its share.
              before      1 round, no drift guard, no calibration (what `build` did before issue 12)
              after       3 rounds, drift guard, calibration pass, wall clock
              after-cpu   the same with thread_cpu (what a plain local `build` does)
            Cost: a build with its calibration pass against the same build without it.
  validate  a plain validate of each configuration's first LUT with a seed no build uses: N random archs plus
            FBNet-A/B/C measured once, end to end, 5 interleaved rounds, with the default LUT's protocol (as a plain
            `validate` measures); the share within +-10% per LUT, with the measurement noise (spread of a model's
            round medians) beside it.
  drift     pinned to one CPU: per clock a clean build, then per --drift CLOCK:HOG scenario (hogs: a busy loop or a
            memory-streaming process on that CPU, or streaming memory on another CPU) a build with the hog started
            halfway through it, with the drift guard and without: per-entry difference from the clean build,
            accepted round measurements taken under the hog, checks, drifts, ops re-taken.

    flock /tmp/fbnet-bench.lock python benchmarks/reproducibility.py [--resolution 224] [--parts repro,validate,drift]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from latency_lut.backends import create_backend  # noqa: E402
from latency_lut.build import build_lut, config_for, reference_op  # noqa: E402
from latency_lut.devices import get_device  # noqa: E402
from latency_lut.drift import DriftGuard  # noqa: E402
from latency_lut.export import export_many  # noqa: E402
from latency_lut.lut import LUT  # noqa: E402
from latency_lut.measure import Protocol  # noqa: E402
from latency_lut.metrics import accuracy  # noqa: E402
from latency_lut.networks import export_networks, sample_archs  # noqa: E402
from latency_lut.predict import predict  # noqa: E402
from latency_lut.spaces import get_space  # noqa: E402
from latency_lut.store import Store  # noqa: E402
from latency_lut.validate import CALIBRATION_SEED, calibration_pass, compare, measure_models  # noqa: E402

CONFIGS = {
    "before": dict(rounds=1, guard=False, calibrate=False, clock="wall"),
    "after": dict(rounds=3, guard=True, calibrate=True, clock="wall"),
    "after-cpu": dict(rounds=3, guard=True, calibrate=True, clock="thread_cpu"),
}
BUDGET = 0.30


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def entry_diffs(a: LUT, b: LUT) -> list[float]:
    return [abs(a[k].median - b[k].median) / ((a[k].median + b[k].median) / 2) for k in a.entries if k in b]


def q(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


def one_build(space, dev, cfg: dict, store_path: Path, seed: int, guard: DriftGuard | None = None,
              progress=None) -> dict:
    backend = create_backend(dev, "onnxruntime")
    protocol = Protocol(clock=cfg["clock"])
    t0 = time.perf_counter()
    with Store(store_path) as st:
        res = build_lut(space, dev, backend, st, protocol, rounds=cfg["rounds"], seed=seed, progress=progress,
                        guard=(guard or DriftGuard()) if cfg["guard"] else None)
        t1 = time.perf_counter()
        created = [rec.created for recs in st.round_records(config_for(dev, backend, protocol)).values()
                   for rec in recs.values()]
        cal_s = 0.0
        if cfg["calibrate"]:
            p = calibration_pass(res.lut, dev, backend, st, budget_s=BUDGET * (t1 - t0),
                                 cost_ratio=res.cost_ratio or 1.0, watch=res.watch)
            cal_s = p.seconds
    backend.close()
    return {"lut": res.lut, "build_s": t1 - t0, "cal_s": cal_s, "drift": res.drift, "created": created}


def named_predictions(lut: LUT, space, raw: bool = False) -> dict[str, float]:
    return {a: (p.raw_total_ms if raw else p.total_ms) for a in sorted(space.archs) if (p := predict(lut, a, space))}


def max_diff(pa: dict[str, float], pb: dict[str, float]) -> float:
    return max(abs(pa[k] - pb[k]) / ((pa[k] + pb[k]) / 2) for k in pa)


def part_repro(space, dev, work: Path, names: list[str]) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for i in range(2):  # A1 B1 C1 A2 B2 C2: the configurations share the host's good and bad minutes
        for n in names:
            print(f"  build {n} #{i + 1} ...", file=sys.stderr, flush=True)
            runs[n].append(one_build(space, dev, CONFIGS[n], work / f"{n}-{i}.sqlite", seed=i))
    print(f"\n{'configuration':<12} {'entries':>7} {'median |diff|':>14} {'p90 |diff|':>11} {'A/B/C max diff':>15} "
          f"{'A/B/C sum diff':>15} "
          f"{'build s':>8} {'calib s':>8} {'calib share':>12} {'cal models':>10} {'split tau':>10} {'drifts':>7}")
    for n in names:
        a, b = runs[n]
        d = entry_diffs(a["lut"], b["lut"])
        abc = max_diff(named_predictions(a["lut"], space), named_predictions(b["lut"], space))
        abc_raw = max_diff(named_predictions(a["lut"], space, True), named_predictions(b["lut"], space, True))
        bs = statistics.fmean([a["build_s"], b["build_s"]])
        cs = statistics.fmean([a["cal_s"], b["cal_s"]])
        cal = a["lut"].header.get("calibration") or {}
        rel = a["lut"].header.get("reliability") or {}
        drifts = f"{a['drift'].get('drifts', 0)}/{b['drift'].get('drifts', 0)}"
        print(f"{n:<12} {len(d):>7} {pct(statistics.median(d)):>14} {pct(q(d, 0.9)):>11} {pct(abc):>15} "
              f"{pct(abc_raw):>15} "
              f"{bs:>8.1f} {cs:>8.1f} {(pct(cs / bs) if cs else '-'):>12} {len(cal.get('fitted_on', [])):>10} "
              f"{rel.get('kendall_tau', float('nan')):>10.3f} {drifts:>7}")
    base = statistics.fmean([r["build_s"] for r in runs.get("before", [])]) if "before" in runs else None
    if base:
        for n in names:
            tot = statistics.fmean([r["build_s"] + r["cal_s"] for r in runs[n]])
            print(f"  {n}: build + calibration = {tot:.1f} s = {tot / base:.2f}x the one-pass build")
    for n in names:
        if CONFIGS[n]["calibrate"]:
            tot = sum(r["build_s"] + r["cal_s"] for r in runs[n]) / sum(r["build_s"] for r in runs[n])
            print(f"  {n}: a cold build with its calibration pass takes {tot:.2f}x the build without it")
    return runs


def part_validate(space, dev, work: Path, runs: dict[str, list[dict]], n: int, seed: int) -> None:
    nets = sample_archs(space, n, seed, named=True)
    backend = create_backend(dev, "onnxruntime")
    # measured as a plain `fbnet-lut validate` of the default LUT measures: with that LUT's protocol
    ref = next((runs[n][0]["lut"] for n in ("after-cpu", "after") if n in runs), runs[next(iter(runs))][0]["lut"])
    clock = ref.header["protocol"].get("clock", "wall")
    with Store(work / "validate.sqlite") as st:
        measured = measure_models(ref, dev, backend, nets, rounds=5, seed=seed, store=st)
    backend.close()
    print(f"\nplain validate, seed {seed} (never used by a build), {len(nets)} models, 5 rounds, clock {clock}")
    print(f"{'LUT':<12} {'predictor':<11} {'within 10%':>10} {'within 5%':>10} {'RMSPE':>7} {'mean err':>9} "
          f"{'tau':>6}")
    noise = None
    for name, rs in runs.items():
        lut = rs[0]["lut"]
        rows = [r for r in compare(lut, nets, measured) if r.ok]
        acc = accuracy([r.predicted_ms for r in rows], [r.measured_ms for r in rows])
        kind = "calibrated" if lut.header.get("calibration") else "plain sum"
        print(f"{name:<12} {kind:<11} {pct(acc.within_10):>10} {pct(acc.within_5):>10} {pct(acc.rmspe):>7} "
              f"{100 * acc.mean_error:>+8.1f}% {acc.kendall_tau:>6.3f}")
        noise = [r.noise for r in rows if r.noise is not None]
    if noise:
        print(f"measurement noise (spread of a model's 5 round medians): median {pct(statistics.median(noise))}, "
              f"p90 {pct(q(noise, 0.9))}")


HOGS = {  # name: (program, on the build's CPU?)
    "cpu": ("while True: pass", True),  # a busy loop taking turns on the build's core
    # a neighbour streaming 256 MB of memory: it takes turns on the core and evicts the caches
    "mem": ("import numpy as np\na = np.ones(32_000_000)\nwhile True: a += 1", True),
    "mem-other": ("import numpy as np\na = np.ones(32_000_000)\nwhile True: a += 1", False),  # memory bandwidth only
}


class HalfwayHog:
    """A build's progress that starts the hog (for ``for_s`` seconds) once half of the ops' rounds are measured,
    so a guarded and an unguarded build are hogged at the same point of their work, whatever their speed."""

    def __init__(self, kind: str, cpu: int, for_s: float) -> None:
        self.kind, self.cpu, self.for_s = kind, cpu, for_s
        self.total = self.done = 0
        self.log: list[float] = []
        self.thread: threading.Thread | None = None

    def start(self, phase: str, total: int) -> None:
        if phase.startswith("measure"):
            self.total, self.done = total, 0

    def advance(self, key: str) -> None:
        self.done += 1
        if self.total and self.thread is None and self.done >= self.total / 2:
            self.thread = hog(self.kind, self.cpu, self.for_s, self.log)

    def finish(self) -> None:
        pass


def hog(kind: str, cpu: int, for_s: float, log: list) -> threading.Thread:
    prog, same = HOGS[kind]
    others = sorted(set(range(os.cpu_count() or 1)) - {cpu})
    where = {cpu} if same or not others else {others[0]}

    def run() -> None:
        p = subprocess.Popen([sys.executable, "-c", prog], preexec_fn=lambda: os.sched_setaffinity(0, where))
        log.append(time.time())
        time.sleep(for_s)
        p.kill()
        p.wait()
        log.append(time.time())

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def part_drift(space, dev, work: Path, hog_s: float, scenarios: list[tuple[str, str]]) -> None:
    """Pinned to one CPU: per clock a clean build, then per (clock, hog) a build with the hog started halfway,
    with the drift guard and without; per-entry difference from that clock's clean build, and how many of the
    LUT's accepted round measurements were taken while the hog ran."""
    cpu = sorted(os.sched_getaffinity(0))[0]
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})  # this thread runs the build (ONNX Runtime at 1 thread runs on the caller)
    clean: dict[str, dict] = {}
    rows = []
    try:
        for clock, kind in scenarios:
            cfg = dict(rounds=3, guard=True, calibrate=False, clock=clock)
            if clock not in clean:
                print(f"  drift: clean build, {clock} ...", file=sys.stderr, flush=True)
                clean[clock] = one_build(space, dev, cfg, work / f"drift-clean-{clock}.sqlite", seed=0)
            for guarded in (True, False):
                print(f"  drift: {kind} hog, {clock}, guard {'on' if guarded else 'off'} ...", file=sys.stderr,
                      flush=True)
                trigger = HalfwayHog(kind, cpu, hog_s)
                r = one_build(space, dev, {**cfg, "guard": guarded},
                              work / f"drift-{clock}-{kind}-{guarded}.sqlite", seed=1, progress=trigger)
                if trigger.thread is not None:
                    trigger.thread.join()
                rows.append((clock, kind, "on" if guarded else "off", r, trigger.log))
    finally:
        os.sched_setaffinity(0, saved)
    print(f"\nhogs on CPU {cpu} (the build's; mem-other: another CPU), started when half of the ops' rounds were "
          f"measured, for {hog_s:.0f} s; 3 rounds; difference from the clean build of the same clock")
    print(f"{'clock':<10} {'hog':<9} {'guard':>5} {'median |diff|':>14} {'p90 |diff|':>11} {'max |diff|':>11} "
          f"{'>5% off':>8} {'>10% off':>9} {'rounds under hog':>17} {'checks':>7} {'drifted':>8} {'re-taken':>9} "
          f"{'re-based':>9} {'build s':>8}")
    for clock, kind, guard, r, log in rows:
        d = entry_diffs(clean[clock]["lut"], r["lut"])
        dr = r["drift"]
        # accepted round measurements committed while the hog ran (or within a second of its end: they overlap it)
        under = f"{sum(log[0] <= c <= log[1] + 1.0 for c in r['created'])}/{len(r['created'])}" if log else "-"
        print(f"{clock:<10} {kind:<9} {guard:>5} {pct(statistics.median(d)):>14} {pct(q(d, 0.9)):>11} "
              f"{pct(max(d)):>11} {sum(x > 0.05 for x in d):>8} {sum(x > 0.10 for x in d):>9} {under:>17} "
              f"{dr.get('checks', 0):>7} {dr.get('drifts', 0):>8} {dr.get('remeasured', 0):>9} "
              f"{dr.get('rebased', 0):>9} {r['build_s']:>8.1f}")
    for clock, c in clean.items():
        dr = c["drift"]
        print(f"  clean {clock} build: {c['build_s']:.1f} s, {dr.get('checks', 0)} checks, {dr.get('drifts', 0)} "
              f"drifted, {dr.get('remeasured', 0)} re-taken")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--parts", default="repro,validate,drift")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--n", type=int, default=20, help="random archs of the validation part (plus FBNet-A/B/C)")
    ap.add_argument("--seed", type=int, default=4242, help="validation seed (no build uses it)")
    ap.add_argument("--hog-seconds", type=float, default=20.0)
    ap.add_argument("--drift", default="wall:cpu,thread_cpu:mem",
                    help=f"the drift part's CLOCK:HOG scenarios (clocks wall, thread_cpu; hogs {', '.join(HOGS)})")
    ap.add_argument("--out", type=Path, default=None, help="folder for the LUTs (default: a temporary one)")
    args = ap.parse_args()
    parts, names = args.parts.split(","), args.configs.split(",")
    space = get_space("fbnet", args.resolution, args.width)
    dev = get_device("local")
    work = args.out or Path(tempfile.mkdtemp(prefix="bench-repro-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"warming the artifact cache (ops and networks) in {work} ...", file=sys.stderr, flush=True)
    export_many(space.unique_specs(), "onnx")
    export_networks(sample_archs(space, 40, CALIBRATION_SEED, named=True) + sample_archs(space, args.n, args.seed),
                    "onnx")
    print(f"FBNet at {args.resolution} (width {args.width}), ONNX Runtime 1 thread, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}; reference op of the drift guard: {reference_op(space.unique_specs()).key}")
    runs = part_repro(space, dev, work, names) if "repro" in parts or "validate" in parts else {}
    if "validate" in parts:
        part_validate(space, dev, work, runs, args.n, args.seed)
    if "drift" in parts:
        part_drift(space, dev, work, args.hog_seconds, [tuple(x.split(":")) for x in args.drift.split(",")])
    for n, rs in runs.items():
        for i, r in enumerate(rs):
            r["lut"].save(work / f"{n}-{i}.json")
    (work / "summary.json").write_text(json.dumps({n: [{k: v for k, v in r.items() if k not in ("lut", "created")}
                                                       for r in rs]
                                                   for n, rs in runs.items()}, indent=1))
    print("\nReproduce with:\n  flock /tmp/fbnet-bench.lock python benchmarks/reproducibility.py "
          f"--resolution {args.resolution} --width {args.width:g} --parts {args.parts} --configs {args.configs} "
          f"--n {args.n} --seed {args.seed} --hog-seconds {args.hog_seconds:g} --drift {args.drift}")


if __name__ == "__main__":
    main()
