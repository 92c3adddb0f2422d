"""fbnet-lut build"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import click
from click.core import ParameterSource

from latency_lut.cli._common import (
    COUNT,
    JOBS,
    RESOLUTION,
    SECONDS,
    THREADS,
    WIDTH,
    ClickProgress,
    FiniteFloat,
    default_lut_path,
    default_store,
    dtype_option,
    echo_json,
    failed_rows,
    store_option,
    table,
)
from latency_lut.validate import MAX_CALIBRATION_NOISE


@click.command()
@click.option("--device", "-d", default="local", show_default=True,
              help="Device name (see 'fbnet-lut devices') or path to a descriptor .yaml file.")
@click.option("--runtime", "-r", default=None, help="onnxruntime, litert or torch [default: the device's].")
@click.option("--space", default="fbnet", show_default=True, metavar="NAME|FILE.yaml",
              help="Search space: a built-in name (fbnet, proxylessnas, ofa_mbv3, mobilenetv3) or a space .yaml file.")
@click.option("--resolution", default=None, type=RESOLUTION,
              help="Input resolution of the network [default: the space's].")
@click.option("--width", default=None, type=WIDTH, help="Channel width multiplier [default: the space's].")
@click.option("--threads", "-t", default=None, type=THREADS,
              help="Runtime threads [default: the device's, 1 for local].")
@dtype_option("fp32", "Precision of the measured models: int8 (static post-training quantization with synthetic "
                      "calibration data, 8-bit I/O; ONNX Runtime and LiteRT) or fp32.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="LUT file to write [default: profiles/DEVICE-RUNTIME-RESOLUTION.json].")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the LUT as CSV.")
@store_option
@click.option("--warmup", default=None, type=COUNT, help="Warmup runs per op [default: 5].")
@click.option("--runs", default=None, type=click.IntRange(3, COUNT.max),
              help="Minimum timed runs per op [default: 30].")
@click.option("--min-seconds", default=None, type=SECONDS, help="Minimum timed seconds per op [default: 0.1].")
@click.option("--noise-threshold", default=None, type=FiniteFloat(0, 1000, min_open=True),
              help="Robust CV above which an op is re-measured, then flagged [default: 0.10].")
@click.option("--retries", default=None, type=click.IntRange(0, 20), help="Re-measurements of a noisy op [default: 2].")
@click.option("--clock", type=click.Choice(["wall", "thread_cpu"]), default=None,
              help="thread_cpu: CPU time of the benchmark thread, which a busy shared host cannot inflate by "
                   "preempting it (the default for local runtimes at 1 thread: two builds agree more closely, see "
                   "benchmarks/reproducibility.py); wall: elapsed time (the default everywhere else).")
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(1, 100),
              help="Interleaved rounds: each op is timed once per round, rounds visit the ops in fresh random "
                   "orders, and an entry is the median of its round medians.")
@click.option("--extra-rounds", default=2, show_default=True, type=click.IntRange(0, 100),
              help="More rounds for the ops whose median round is over 8% slower than their fastest (a "
                   "neighbour's bursts in two of them); 0: none. Not on a farm.")
@click.option("--drift-every", default=16, show_default=True, type=click.IntRange(1, 100_000),
              help="Drift guard: re-time a reference op after this many ops.")
@click.option("--drift-threshold", default=0.20, show_default=True, type=FiniteFloat(0, 10, min_open=True),
              help="Drift guard: the largest relative change of the reference it lets pass before it re-takes the "
                   "ops timed since its last good check; on a quiet host the band narrows to 4x the reference's "
                   "own scatter, down to 8%.")
@click.option("--no-drift-guard", is_flag=True, help="Do not re-time a reference op.")
@click.option("--no-calibrate", is_flag=True,
              help="Skip the closing whole-network pass that fits the LUT's calibration (at most 30%% of the "
                   "build's time); the LUT is then an uncalibrated plain sum.")
@click.option("--calibration-models", default=None, type=click.IntRange(0, 10_000),
              help="Sampled architectures of the calibration pass, plus the space's named ones [default: up to 40 "
                   "as the time budget allows; iOS: 12, carried in the bundle and fitted by 'ingest'].")
@click.option("--calibration-budget", default=0.3, show_default=True, type=FiniteFloat(0, 1000, min_open=True),
              help="Time of the calibration pass, as a share of the build's own time.")
@click.option("--calibration-max-noise", default=MAX_CALIBRATION_NOISE, show_default=True, type=FiniteFloat(0, 10),
              help="No calibration is fitted when the networks' round medians spread by more than this (median, "
                   "relative): a fit taken on a host that busy would move predictions the wrong way.")
@click.option("--jobs", "-j", default=1, show_default=True, type=JOBS,
              help="Parallel export processes (measurement is always serial).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the build summary as JSON.")
@click.option("--bundle", "bundle_path", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="iOS devices, and Android phones measured offline: bundle folder to write "
                   "[default: profiles/bundles/DEVICE-SPACE-ID].")
@click.option("--only", multiple=True, hidden=True, help="iOS devices and Android bundles: only these op keys.")
@click.option("--farm", "farm_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Farm file: build on many devices at once, on Ray (replaces --device; see docs/farm.md).")
def build(device: str, runtime: str | None, space: str, resolution: int | None, width: float | None,
          threads: int | None, dtype: str, output: Path | None, csv_path: Path | None, store: Path | None,
          warmup: int | None, runs: int | None,
          min_seconds: float | None, noise_threshold: float | None, retries: int | None, clock: str | None,
          rounds: int, extra_rounds: int, drift_every: int, drift_threshold: float, no_drift_guard: bool,
          no_calibrate: bool,
          calibration_models: int | None, calibration_budget: float, calibration_max_noise: float, jobs: int,
          quiet: bool, as_json: bool, bundle_path: Path | None, only: tuple[str, ...], farm_path: Path | None) -> None:
    """Measure every op of a search space on a device and write its LUT.

    Ops are exported (cached by key and exporter version) and timed under the measurement protocol in
    interleaved rounds, watched by a drift guard; every raw sample is committed to the store as soon as it is
    taken. A short whole-network pass then fits the LUT's calibration (--no-calibrate skips it). Rerunning the
    same command after an interruption measures only what is missing, mid-round included; rerunning it after a
    finished build measures nothing.

    \b
    Examples:
      fbnet-lut build                                  # local CPU, ONNX Runtime, 224x224
      fbnet-lut build --runtime litert --jobs 2        # LiteRT with XNNPACK, 2 export processes
      fbnet-lut build --runtime litert --dtype int8    # int8 LUT (full-integer PTQ) -> ...-224-int8.json
      fbnet-lut build --resolution 96 --width 0.35 -o fbnet96.json
      fbnet-lut build --space ofa_mbv3 --width 1.2 --resolution 160
      fbnet-lut build --space my_space.yaml --resolution 64       # a user's space (embedded in the LUT)
      fbnet-lut build --device iphonex                 # iPhone: a bundle for the app, then 'fbnet-lut ingest'
      fbnet-lut build --farm farm.yaml                 # many phones on many hosts, one LUT per model (Ray)
    """
    from latency_lut.backends import create_backend
    from latency_lut.build import build_lut
    from latency_lut.devices import get_device
    from latency_lut.drift import DriftGuard
    from latency_lut.measure import Protocol
    from latency_lut.outputs import check_outputs
    from latency_lut.spaces import get_space
    from latency_lut.store import Store
    from latency_lut.validate import calibration_pass

    dev = get_device(device)
    sp = get_space(space, resolution, width)
    overrides = {k: v for k, v in dict(warmup=warmup, runs=runs, min_seconds=min_seconds, clock=clock,
                                       noise_threshold=noise_threshold, retries=retries).items() if v is not None}
    if rounds < 1:
        raise click.BadParameter(f"must be at least 1, got {rounds}", param_hint="--rounds")
    if calibration_models is not None and calibration_models < 0:
        raise click.BadParameter(f"must be >= 0, got {calibration_models}", param_hint="--calibration-models")
    try:
        guard = None if no_drift_guard else DriftGuard(every=drift_every, threshold=drift_threshold)
    except ValueError as e:
        hint = "--drift-every" if "every" in str(e) else "--drift-threshold"
        raise click.BadParameter(str(e).replace("drift guard ", ""), param_hint=hint) from None
    if dev.kind == "ios":  # the phone runs the models itself: bundle out, results in (latency_lut/offline)
        from latency_lut.cli._ios import ios_bundle_flow

        return ios_bundle_flow(dev, sp, runtime=runtime, threads=threads, overrides=overrides, only=only,
                               bundle_path=bundle_path, store_path=store, lut_path=output, csv_path=csv_path,
                               jobs=jobs, quiet=quiet, as_json=as_json,
                               calibration_models=0 if no_calibrate else calibration_models, dtype=dtype)
    if dev.kind == "android" and bundle_path is not None:  # a phone this host cannot reach: bundle out, log in
        from latency_lut.cli._android_offline import build_bundle

        return build_bundle(dev, sp, device, threads=threads, overrides=overrides, only=only,
                            bundle_path=bundle_path, store_path=store, jobs=jobs, quiet=quiet, as_json=as_json,
                            dtype=dtype, runtime=runtime)
    try:
        protocol = Protocol(**overrides)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    if farm_path is not None:
        if click.get_current_context().get_parameter_source("device") == ParameterSource.COMMANDLINE:
            raise click.BadParameter("the farm file names the devices; drop --device", param_hint="--farm")
        from latency_lut.cli.farm import build_on_farm

        return build_on_farm(farm_path, sp, protocol, runtime=runtime, threads=threads, dtype=dtype, output=output,
                             csv_path=csv_path, store=store, rounds=rounds, guard=guard, jobs=jobs, quiet=quiet,
                             as_json=as_json, lut_path=default_lut_path,
                             calibrate=None if no_calibrate else {
                                 "share": calibration_budget, "max_noise": calibration_max_noise,
                                 "max_models": 40 if calibration_models is None else calibration_models},
                             estimate=estimated_measure_seconds, summarize=calibration_summary)
    store = store or default_store()
    backend = create_backend(dev, runtime, dtype, threads=threads)  # a dtype the runtime lacks: error, no output
    try:
        out = check_outputs({"-o": output or default_lut_path(dev.name, backend.runtime, sp.id, dtype),
                             "--csv": csv_path}, store=store)["-o"]
    except BaseException:
        backend.close()
        raise
    if clock is None and dev.kind == "local" and backend.threads == 1:
        protocol = replace(protocol, clock="thread_cpu")  # chosen on evidence: README, "Reproducibility"
    if protocol.clock == "thread_cpu" and (dev.kind != "local" or backend.threads != 1):
        backend.close()
        raise click.BadParameter("--clock thread_cpu needs a local device at 1 thread", param_hint="--clock")
    t0 = time.perf_counter()
    try:
        with Store(store) as st:
            bar = ClickProgress(quiet or as_json)
            res = build_lut(sp, dev, backend, st, protocol, jobs=jobs, progress=bar, rounds=rounds, guard=guard,
                            extra_rounds=extra_rounds)
            cal = None
            if not no_calibrate and res.lut.header["complete"]:
                # The budget is a share of the build's time: this run's, or (when it reused the store) what
                # measuring its entries costs, so that a rerun picks the same models as the cold build.
                build_s = max(res.export_seconds + res.measure_seconds, estimated_measure_seconds(res.lut, rounds))
                cal = calibration_pass(res.lut, dev, backend, st, budget_s=calibration_budget * build_s,
                                       max_models=40 if calibration_models is None else calibration_models,
                                       jobs=jobs, progress=bar,
                                       cost_ratio=res.cost_ratio or 1.0, max_noise=calibration_max_noise,
                                       watch=res.watch)
    finally:
        backend.close()
    res.lut.save(out)
    if csv_path:
        res.lut.to_csv(csv_path)
    total = time.perf_counter() - t0
    summary = {
        "lut": str(out), "device": dev.name, "runtime": backend.runtime, "dtype": dtype, "space": sp.id,
        "entries": len(res.lut),
        "measured": res.measured, "reused": res.reused, "flagged": res.flagged,
        "export_seconds": round(res.export_seconds, 2), "measure_seconds": round(res.measure_seconds, 2),
        "total_seconds": round(total, 2), "complete": res.lut.header["complete"], "rounds": res.rounds,
        "reliability_tau": (res.lut.header.get("reliability") or {}).get("kendall_tau"),
        "drift": res.drift, "calibration": calibration_summary(cal, no_calibrate, res.lut.header["complete"]),
        "failed": res.failed,
    }
    if as_json:
        echo_json(summary)
        return
    rows = [[k, ", ".join(v) if isinstance(v, list) else v] for k, v in summary.items()
            if k not in ("flagged", "drift", "calibration", "failed")]
    rows += failed_rows(res.failed)
    d = res.drift
    rows.append(["drift guard", "off" if guard is None else f"{d['checks']} checks, {d['drifts']} drifted, "
                 f"{d['remeasured']} op(s) re-measured"
                 + (f", re-based {d['rebased']}x (a load outlasted the wait)" if d.get("rebased") else "")])
    c = summary["calibration"]
    rows.append(["calibration", c["status"] if c["status"] != "fitted" else
                 f"fitted on {c['models']} models in {c['seconds']:.1f} s: {100 * c['cv_within_10']:.0f}% within "
                 f"10% ({c['folds']}-fold CV; plain sum {100 * c['plain_within_10']:.0f}%)"])
    rows.append(["flagged", f"{len(res.flagged)} noisy op(s)" + (": " + ", ".join(res.flagged[:5]) if res.flagged
                                                                  else "")])
    click.echo(table(rows, ["build", "value"], right=[False, False]))


def estimated_measure_seconds(lut, rounds: int) -> float:  # lut: latency_lut.lut.LUT
    from latency_lut.measure import Protocol, protocol_seconds

    protocol = Protocol.from_dict(lut.header["protocol"])
    return rounds * sum(protocol_seconds(e.median, protocol) for e in lut.entries.values())


def calibration_summary(cal, skipped: bool, complete: bool) -> dict:  # cal: latency_lut.validate.CalibrationPass
    if skipped:
        return {"status": "skipped (--no-calibrate): the LUT is an uncalibrated plain sum"}
    if not complete:
        return {"status": "not fitted: the LUT is incomplete"}
    if cal is not None and cal.calibration is None and cal.report.get("refused"):
        return {"status": f"not fitted: {cal.report['refused']}; fit one with 'fbnet-lut validate --calibrate' "
                          "when the host is quieter"}
    if cal is None or cal.calibration is None:
        return {"status": f"not fitted: the budget ({cal.budget_seconds:.1f} s) allowed {cal.models} model(s), a fit "
                          "needs 3; raise --calibration-budget or run 'fbnet-lut validate --calibrate'"}
    r = cal.report
    return {"status": "fitted", "models": cal.models, "reused": cal.reused, "seconds": round(cal.seconds, 2),
            "budget_seconds": round(cal.budget_seconds, 2), "folds": r["folds"],
            "cv_within_10": r["calibrated_cv"]["within_10"], "cv_rmspe": r["calibrated_cv"]["rmspe"],
            "plain_within_10": r["plain_sum"]["within_10"]}
