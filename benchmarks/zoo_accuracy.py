"""How well does a LUT price models that others wrote? Public-zoo architectures, two runtimes, one thread.

The definitions come from a public model zoo installable from PyPI, gen-efficientnet-pytorch (``geffnet``; timm
needs torchvision, which does not load with the pinned CPU torch): MobileNetV2/V3, MnasNet, SPNASNet, FBNet-C,
EfficientNet(-Lite), MixNet, at 224x224, random weights (latency does not depend on them), built in geffnet's
exportable mode (plain activations and static TF "same" pads, as one deploys them).

For each runtime (ONNX Runtime and LiteRT with XNNPACK, 1 thread, this machine's CPU) the benchmark
  1. builds the FBNet-224 LUT (artifacts are reused from the export cache) and fits its calibration on N random
     FBNet architectures (``validate --calibrate``): the calibration has seen no zoo model;
  2. prices every zoo model from that LUT (``predict_module(..., measure=measurer(store))``): units the LUT lacks --
     MBConv blocks, mixed-kernel blocks, stems and heads of these models -- are measured on the spot, as one
     unit each; the first (cold) and a second (warm) prediction are timed;
  3. measures every zoo model end to end (exported whole, interleaved rounds, median of round medians), twice in
     the same rounds: back to back (one session, as benchmark_model runs a model) and with cold weights
     (``--weights cold``: rotating over copies of it, 64 MiB in all, so none of it is in cache when an inference
     starts). The two differ only for a model whose whole memory fits in this host's last-level cache;
  4. prints plain and calibrated predictions against the measurement, the error per model and the measurement
     noise beside it, writes a PNG scatter and a JSON of everything to --out, and the command to reproduce it.

    flock /tmp/fbnet-bench.lock python benchmarks/zoo_accuracy.py            # ~20-30 min on 2 cores, cold
    python benchmarks/zoo_accuracy.py --runtimes onnxruntime --rounds 3 --models mobilenetv2_100,mnasnet_b1

Exports time nothing, so they can run ahead, outside the timing lock: ``--prepare`` fills the artifact cache and
records how long each model's missing units took to export; the timed run adds that to its cold prediction time.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from latency_lut.backends import create_backend  # noqa: E402
from latency_lut.build import build_lut  # noqa: E402
from latency_lut.devices import get_device  # noqa: E402
from latency_lut.extend import measurer  # noqa: E402
from latency_lut.measure import Protocol  # noqa: E402
from latency_lut.models import COLD_SUFFIX, ModelUnit  # noqa: E402
from latency_lut.predict import predict_module  # noqa: E402
from latency_lut.spaces import get_space  # noqa: E402
from latency_lut.store import Store  # noqa: E402
from latency_lut.validate import record, run_validation, validate_models  # noqa: E402

ZOO = ("mobilenetv2_100", "mobilenetv2_140", "mnasnet_b1", "mnasnet_a1", "spnasnet_100", "fbnetc_100",
       "mobilenetv3_large_100", "mobilenetv3_small_100", "tf_mobilenetv3_large_100", "efficientnet_b0",
       "efficientnet_lite0", "mixnet_s")
TARGETS = {"within_10": 1.0, "median_abs_error": 0.05, "cold_s": 60.0, "warm_s": 1.0}


def zoo_model(name: str):  # -> torch.nn.Module
    import geffnet
    import torch

    geffnet.config.set_exportable(True)  # plain activations, static TF pads: the deployable form
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return geffnet.create_model(name, pretrained=False).eval()


def run_runtime(runtime: str, names: list[str], args: argparse.Namespace, out: Path) -> list[dict]:
    device = get_device("local")
    space = get_space("fbnet", 224, 1.0)
    protocol = Protocol(clock=args.clock)
    store_path = out / f"store-{runtime}.sqlite"
    backend = create_backend(device, runtime, threads=1)
    shared_cache = os.environ.get("FBNET_LUT_CACHE")
    try:
        with Store(store_path) as st:
            t0 = time.perf_counter()
            lut = build_lut(space, device, backend, st, protocol, jobs=args.jobs).lut
            print(f"[{runtime}] FBNet LUT: {len(lut)} entries in {time.perf_counter() - t0:.0f} s", flush=True)
            cal = run_validation(lut, device, backend, n=args.n_cal, seed=args.seed, rounds=args.rounds,
                                 jobs=args.jobs, store=st, do_calibrate=True)
            record(lut, cal)
            print(f"[{runtime}] calibration fitted on {args.n_cal + 3} FBNet networks: "
                  f"{cal.calibration.coef if cal.calibration else None}", flush=True)
        lut.save(out / f"lut-{runtime}.json")
        if args.fresh_cache:  # the zoo's units (and whole models) exported anew: a cold prediction includes that
            cold_cache = out / f"cache-{runtime}"
            shutil.rmtree(cold_cache, ignore_errors=True)
            os.environ["FBNET_LUT_CACHE"] = str(cold_cache)
        units, timing = [], {}
        for name in names:
            model = zoo_model(name)
            t = time.perf_counter()
            p = predict_module(lut, model, (1, 3, 224, 224), measure=measurer(store_path), name=name)
            cold = time.perf_counter() - t
            t = time.perf_counter()
            predict_module(lut, model, (1, 3, 224, 224), name=name)
            warm = time.perf_counter() - t
            timing[name] = (cold, warm, len(p.ops), sum(bool(o.note) for o in p.ops),
                            sum(q.numel() for q in model.parameters()) * 4 / 2**20)
            print(f"[{runtime}] {name}: {len(p.ops)} units, cold {cold:.1f} s, warm {warm:.2f} s", flush=True)
            units.append(ModelUnit(name, (1, 3, 224, 224), module=model))
            units.append(ModelUnit(name, (1, 3, 224, 224), module=model, weights="cold"))
        lut.save(out / f"lut-{runtime}.json")
        with Store(store_path) as st:  # hot and cold in one run, interleaved: their ratio is not the host's mood
            rep = validate_models(lut, device, backend, units, rounds=args.rounds, seed=args.seed, store=st,
                                  store_path=store_path)
    finally:
        backend.close()
        os.environ.pop("FBNET_LUT_CACHE", None)
        if shared_cache is not None:
            os.environ["FBNET_LUT_CACHE"] = shared_cache
    rows = []
    cold_rows = {r.label: r for r in rep.rows if r.key.endswith(COLD_SUFFIX)}
    for r in rep.rows:
        if r.key.endswith(COLD_SUFFIX):
            continue
        cold, warm, n_units, n_prim, weight_mib = timing[r.label]
        c = cold_rows[r.label]
        rows.append({"runtime": runtime, "model": r.label, "mmacs": r.flops / 1e6, "plain_ms": r.plain_ms,
                     "calibrated_ms": r.predicted_ms, "measured_ms": r.measured_ms, "plain_error": r.plain_error,
                     "calibrated_error": r.error, "noise": r.noise, "units": n_units, "from_primitives": n_prim,
                     "cold_s": cold, "warm_s": warm, "status": r.status,
                     "weight_mib": weight_mib,
                     "measured_cold_ms": c.measured_ms, "plain_error_cold": c.plain_error,
                     "calibrated_error_cold": c.error, "noise_cold": c.noise,
                     "host_factor": rep.summary.get("host_factor")})
    return rows


def prepare(runtimes: list[str], names: list[str], args: argparse.Namespace, out: Path) -> None:
    """Everything the measurement needs exported into the artifact cache, outside the timing lock (exports
    time nothing). Per model, the seconds its missing units took to export are kept: a cold prediction is that
    plus the measuring the main run times."""
    from latency_lut.decompose.torch_fx import decompose_module
    from latency_lut.export import export_many
    from latency_lut.models import artifact_for
    from latency_lut.networks import export_networks, sample_archs

    space = get_space("fbnet", 224, 1.0)
    fmts = {"onnxruntime": "onnx", "litert": "tflite"}
    times: dict[str, dict[str, float]] = {}
    for rt in runtimes:
        fmt = fmts[rt]
        export_many(space.unique_specs(), fmt, jobs=args.jobs)
        export_networks(sample_archs(space, args.n_cal, args.seed), fmt, jobs=args.jobs)
        for name in names:
            model = zoo_model(name)
            t = time.perf_counter()
            export_many([o.spec for o in decompose_module(model, (1, 3, 224, 224))], fmt)
            times.setdefault(rt, {})[name] = time.perf_counter() - t
            artifact_for(ModelUnit(name, (1, 3, 224, 224), module=model), fmt)
            print(f"[prepare {rt}] {name}: units exported in {times[rt][name]:.1f} s", flush=True)
    (out / "export_seconds.json").write_text(json.dumps(times, indent=1))


def warm_timing(runtimes: list[str], names: list[str], out: Path) -> None:
    """Warm prediction time of every zoo model from the LUTs a full run left in --out (nothing to measure)."""
    from latency_lut.lut import load

    data = json.loads((out / "zoo_accuracy.json").read_text())
    for rt in runtimes:
        lut = load(out / f"lut-{rt}.json")
        for name in names:
            model = zoo_model(name)
            predict_module(lut, model, (1, 3, 224, 224), name=name)
            t = time.perf_counter()
            predict_module(lut, model, (1, 3, 224, 224), name=name)
            warm = time.perf_counter() - t
            for r in data["rows"]:
                if r["runtime"] == rt and r["model"] == name:
                    r["warm_s"] = warm
            print(f"[warm {rt}] {name}: {warm:.2f} s", flush=True)
        data["summary"][rt]["max_warm_s"] = max(r["warm_s"] for r in data["rows"] if r["runtime"] == rt)
    (out / "zoo_accuracy.json").write_text(json.dumps(data, indent=1))
    print_table(data["rows"])


def pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:+.1f}%"


def summarize(rows: list[dict], key: str) -> dict:
    errs = [r[key] for r in rows if r[key] is not None]
    if not errs:
        return {"n": 0}
    return {"n": len(errs), "within_10": sum(abs(e) <= 0.10 for e in errs) / len(errs),
            "median_abs_error": statistics.median(abs(e) for e in errs), "max_abs_error": max(abs(e) for e in errs)}


def moved(r: dict) -> str:
    """Whether the calibration (fitted on FBNet networks only) moved this model closer to its measurement."""
    p, c = r["plain_error"], r["calibrated_error"]
    if p is None or c is None:
        return ""
    d = abs(c) - abs(p)
    return "same" if abs(d) < 0.0005 else f"{'closer' if d < 0 else 'FURTHER'} {100 * abs(d):.1f}pp"


def print_table(rows: list[dict]) -> None:
    head = ["runtime", "model", "MMACs", "weights MiB", "units", "plain ms", "calib. ms", "measured ms",
            "plain err", "calib. err", "calibration", "noise", "cold-weights ms", "plain err", "calib. err", "noise",
            "cold s", "warm s"]

    def noise(v: float | None) -> str:
        return "" if v is None else f"{100 * v:.1f}%"

    body = [[r["runtime"], r["model"], f"{r['mmacs']:.0f}", f"{r.get('weight_mib', 0):.1f}",
             f"{r['units']}" + (f" ({r['from_primitives']}p)" if r["from_primitives"] else ""),
             f"{r['plain_ms']:.2f}" if r["plain_ms"] else "", f"{r['calibrated_ms']:.2f}" if r["calibrated_ms"] else "",
             f"{r['measured_ms']:.2f}" if r["measured_ms"] else r["status"][:40], pct(r["plain_error"]),
             pct(r["calibrated_error"]), moved(r), noise(r["noise"]),
             f"{r['measured_cold_ms']:.2f}" if r.get("measured_cold_ms") else "", pct(r.get("plain_error_cold")),
             pct(r.get("calibrated_error_cold")), noise(r.get("noise_cold")),
             f"{r['cold_s']:.1f}", f"{r['warm_s']:.2f}"] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for b in body:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(b, widths)) + " |")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["measured_ms"]]
    fig, axes = plt.subplots(1, len({r["runtime"] for r in ok}), figsize=(11, 5.2), dpi=110, squeeze=False)
    for ax, rt in zip(axes[0], sorted({r["runtime"] for r in ok})):
        rr = [r for r in ok if r["runtime"] == rt]
        vals = [v for r in rr for v in (r["measured_ms"], r["plain_ms"], r["calibrated_ms"]) if v]
        lo, hi = 0.8 * min(vals), 1.15 * max(vals)
        ax.fill_between([lo, hi], [0.9 * lo, 0.9 * hi], [1.1 * lo, 1.1 * hi], color="tab:green", alpha=0.15,
                        label="+-10%")
        ax.plot([lo, hi], [lo, hi], color="tab:green", lw=1)
        ax.scatter([r["measured_ms"] for r in rr], [r["plain_ms"] for r in rr], c="tab:gray", s=18, label="plain sum")
        ax.scatter([r["measured_ms"] for r in rr], [r["calibrated_ms"] for r in rr], c="tab:blue", s=22,
                   label="calibrated (fitted on FBNet only)")
        for r in rr:
            ax.annotate(r["model"].replace("_100", ""), (r["measured_ms"], r["calibrated_ms"]), fontsize=6,
                        xytext=(3, -3), textcoords="offset points")
        ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="measured latency (ms)",
               ylabel="predicted latency (ms)", title=f"geffnet zoo at 224, {rt}, 1 thread")
        ax.legend(loc="upper left", fontsize=7)
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runtimes", nargs="+", default=["onnxruntime", "litert"])
    ap.add_argument("--models", default=",".join(ZOO), help="comma-separated geffnet model names")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved end-to-end rounds")
    ap.add_argument("--n-cal", type=int, default=20, help="random FBNet networks the calibration is fitted on")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2, help="export processes for the FBNet LUT")
    ap.add_argument("--clock", default="thread_cpu", choices=["wall", "thread_cpu"])
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "zoo_accuracy")
    ap.add_argument("--shared-cache", dest="fresh_cache", action="store_false",
                    help="price the zoo from the shared artifact cache (default: a fresh one per run, so that cold "
                         "predictions include exporting their units)")
    ap.add_argument("--prepare", action="store_true",
                    help="only export everything into the cache (no timing: needs no benchmark lock)")
    ap.add_argument("--warm-only", action="store_true",
                    help="only re-time warm predictions from the LUTs of a previous run in --out")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.models.split(",") if n]
    if args.prepare:
        return prepare(args.runtimes, names, args, args.out)
    if args.warm_only:
        return warm_timing(args.runtimes, names, args.out)
    export_s = json.loads((args.out / "export_seconds.json").read_text()) \
        if (args.out / "export_seconds.json").exists() else {}
    t0 = time.perf_counter()
    rows = [r for rt in args.runtimes for r in run_runtime(rt, names, args, args.out)]
    for r in rows:  # a cold prediction also exports its missing units (done ahead of the timed run, --prepare)
        r["export_s"] = export_s.get(r["runtime"], {}).get(r["model"], 0.0)
        r["cold_s"] += r["export_s"]
    print()
    print_table(rows)
    print()
    summary = {}
    for rt in args.runtimes:
        rr = [r for r in rows if r["runtime"] == rt]
        summary[rt] = {"plain": summarize(rr, "plain_error"), "calibrated": summarize(rr, "calibrated_error"),
                       "plain_cold": summarize(rr, "plain_error_cold"),
                       "calibrated_cold": summarize(rr, "calibrated_error_cold"),
                       "max_cold_s": max(r["cold_s"] for r in rr), "max_warm_s": max(r["warm_s"] for r in rr),
                       "median_noise": statistics.median(r["noise"] for r in rr if r["noise"] is not None),
                       "from_primitives": sum(r["from_primitives"] for r in rr)}
        for pred, vs in (("plain", "back to back"), ("calibrated", "back to back"), ("plain_cold", "cold weights"),
                         ("calibrated_cold", "cold weights")):
            s = summary[rt][pred]
            if s["n"]:
                print(f"{rt:12s} {pred.split('_')[0]:10s} vs {vs}: {s['n']} models, {100 * s['within_10']:.0f}% "
                      f"within +-10%, median |error| {100 * s['median_abs_error']:.1f}%, max |error| "
                      f"{100 * s['max_abs_error']:.1f}%")
        hf = rr[0].get("host_factor")
        if hf:  # the LUT's reference re-timed between the zoo models, against its LUT entry
            adj = {k: summarize([{k: None if r[k] is None else (1 + r[k]) * hf - 1} for r in rr], k)
                   for k in ("calibrated_error", "calibrated_error_cold")}
            summary[rt]["host_factor"] = hf
            summary[rt]["at_lut_state"] = adj
            b2b, cw = adj["calibrated_error"], adj["calibrated_error_cold"]
            print(f"{rt:12s} the host ran x{hf:.3f} the LUT's speed during these measurements; at the LUT's speed "
                  f"the calibrated errors would be: back to back median {100 * b2b['median_abs_error']:.1f}% "
                  f"({100 * b2b['within_10']:.0f}% within +-10%), cold weights median "
                  f"{100 * cw['median_abs_error']:.1f}% ({100 * cw['within_10']:.0f}% within +-10%)")
        gap = {r["model"]: r["measured_cold_ms"] / r["measured_ms"] - 1 for r in rr
               if r.get("measured_cold_ms") and r["measured_ms"]}
        if gap:
            print(f"{rt:12s} cold weights over back to back: median {100 * statistics.median(gap.values()):+.1f}%, "
                  + ", ".join(f"{m} {100 * g:+.1f}%" for m, g in sorted(gap.items(), key=lambda kv: -kv[1])[:3]))
        further = [r for r in rr if moved(r).startswith("FURTHER")]
        summary[rt]["moved_further"] = [r["model"] for r in further]
        worst = max((abs(r["calibrated_error"]) - abs(r["plain_error"]) for r in further), default=0.0)
        print(f"{rt:12s} calibration moved {sum(moved(r).startswith('closer') for r in rr)} model(s) closer, "
              f"{len(further)} further" + (f" (by at most {100 * worst:.1f}pp)" if further else ""))
        print(f"{rt:12s} prediction time: cold <= {summary[rt]['max_cold_s']:.1f} s (incl. measuring missing units),"
              f" warm <= {summary[rt]['max_warm_s']:.2f} s; median measurement noise "
              f"{100 * summary[rt]['median_noise']:.1f}%; units priced from primitives: "
              f"{summary[rt]['from_primitives']}")
    print(f"targets: every model within +-10%, median |error| <= 5%, cold <= 60 s, warm <= 1 s; "
          f"total {time.perf_counter() - t0:.0f} s")
    plot(rows, args.out / "zoo_accuracy.png")
    (args.out / "zoo_accuracy.json").write_text(json.dumps({"rows": rows, "summary": summary,
                                                            "args": {k: str(v) for k, v in vars(args).items()}},
                                                           indent=1))
    print(f"plot: {args.out / 'zoo_accuracy.png'}; data: {args.out / 'zoo_accuracy.json'}")
    print("reproduce: flock /tmp/fbnet-bench.lock python benchmarks/zoo_accuracy.py " + shlex.join(sys.argv[1:]))


if __name__ == "__main__":
    main()
