"""fbnet-lut build --farm: the build on a device farm (latency_lut/farm), its LUTs and its summary."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from latency_lut.cli._common import ClickProgress, default_store, echo_json, table


def build_on_farm(farm_path: Path, sp: Any, protocol: Any, *, runtime: str | None, threads: int | None,
                  dtype: str, output: Path | None, csv_path: Path | None, store: Path | None, rounds: int,
                  guard: Any, jobs: int, quiet: bool, as_json: bool, lut_path: Any, calibrate: dict[str, Any] | None,
                  estimate: Any, summarize: Any) -> None:
    """``sp`` a SearchSpace, ``protocol`` a Protocol, ``guard`` a DriftGuard or None, ``lut_path(device, runtime,
    space_id, dtype)`` the default LUT path. ``calibrate`` (None: --no-calibrate) holds the calibration pass's
    ``share`` of the build's device time, ``max_models`` and ``max_noise``; ``estimate(lut, rounds)`` is what
    measuring a LUT's entries costs and ``summarize(pass, skipped, complete)`` the summary of a pass, as for a
    single-device build."""
    from latency_lut.farm.config import FarmError, load_farm
    from latency_lut.outputs import check_outputs
    from latency_lut.quantize import check_dtype
    from latency_lut.store import Store

    farm = load_farm(farm_path)  # every check of the file comes before Ray is even imported
    for d in farm.devices:  # a dtype a device's runtime cannot run: refused before Ray starts
        check_dtype(runtime or d.device.runtime, dtype, d.device.name)
    try:
        from latency_lut.farm import runner
    except ImportError as e:
        if e.name and e.name.split(".")[0] == "ray":
            raise click.ClickException("--farm needs Ray, which is not installed; run: "
                                       "pip install 'fbnet-lut[farm]'") from None
        raise
    names = {d.device.name: d.device for d in farm.devices}
    if (output or csv_path) and len(names) > 1:
        raise click.BadParameter(f"the farm makes one LUT per device name ({', '.join(sorted(names))}); leave "
                                 "--output/--csv out to get profiles/DEVICE-RUNTIME-SPACE.json each",
                                 param_hint="--output")
    store_path = store or default_store()
    checked = check_outputs({**{f"the LUT of {n}": output or lut_path(n, runtime or d.runtime, sp.id, dtype)
                                for n, d in names.items()}, "--csv": csv_path},
                            inputs={"--farm": farm_path}, store=store_path)
    outs = {n: checked[f"the LUT of {n}"] for n in names}
    bar = ClickProgress(quiet or as_json)
    ahead = runner.ExportAhead(farm, sp.unique_specs(), runtime=runtime, dtype=dtype, jobs=jobs)
    cal_s = 0.0
    with runner.FarmSession(farm, runtime=runtime, threads=threads, dtype=dtype, meanwhile=ahead, progress=bar) as fs, \
            Store(store_path) as st:
        res = fs.build(sp, st, protocol, rounds=rounds, guard=guard, jobs=jobs, progress=bar)
        t0 = time.perf_counter()
        for g in res.groups:
            if calibrate is not None and g.lut is not None and not g.left and g.lut.header["complete"]:
                # as on one device: a share of the build's time, here its devices' time (export included once),
                # or what measuring the entries costs when the store had them, so a rerun picks the same models
                build_s = max(ahead.seconds + res.export_seconds + g.device_seconds,
                              estimate(g.lut, rounds))
                fs.calibrate(g, st, budget_s=calibrate["share"] * build_s, max_models=calibrate["max_models"],
                             jobs=jobs, progress=bar, max_noise=calibrate["max_noise"])
        cal_s = time.perf_counter() - t0
    luts = []
    for g in res.groups:
        out = outs[g.name]
        if g.lut is not None and not g.left:
            g.lut.save(out)
            if csv_path:
                g.lut.to_csv(csv_path)
        spread = (g.lut.header["farm"]["device_spread"] or {}) if g.lut is not None else {}
        complete = bool(g.lut is not None and g.lut.header["complete"])
        luts.append({"lut": str(out) if not g.left else None, "device": g.name, "runtime": g.config.runtime,
                     "dtype": dtype,
                     "devices": g.devices, "entries": len(g.lut) if g.lut is not None else 0,
                     "measured": g.measured, "reused": g.reused, "tasks": g.tasks, "per_device": g.per_device,
                     "left": g.left, "flagged": g.flagged,
                     "complete": complete, "calibration": summarize(g.calibration, calibrate is None, complete),
                     "device_spread_median": spread.get("median"), "device_spread_max": spread.get("max")})
    summary = {"space": sp.id, "store": str(store_path), "luts": luts, "dropped": res.dropped,
               "stolen": res.stolen, "returned": res.returned, "rounds": rounds,
               "drift": res.drift if guard is not None else None,
               "ray_start_seconds": round(res.ray_start_seconds, 2), "setup_seconds": round(res.setup_seconds, 2),
               # the export that ran while Ray started, then what was still missing
               "export_ahead_seconds": round(fs.meanwhile_seconds, 2), "export_seconds": round(res.export_seconds, 2),
               "measure_seconds": round(res.measure_seconds, 2), "calibration_seconds": round(cal_s, 2),
               "ray_stop_seconds": round(fs.ray_stop_seconds, 2)}
    if as_json:
        echo_json(summary)
    else:
        rows = [[x["device"], x["runtime"], len(x["devices"]), x["entries"], x["measured"], x["reused"], x["tasks"],
                 "yes" if x["complete"] else "NO", "-" if x["device_spread_median"] is None else
                 f"{100 * x['device_spread_median']:.1f}%", x["lut"] or "(not written)"] for x in luts]
        click.echo(table(rows, ["LUT of", "runtime", "devices", "entries", "measured", "reused", "tasks",
                                "complete", "device spread", "file"]))
        click.echo(f"ray start {res.ray_start_seconds:.1f} s, device setup {res.setup_seconds:.1f} s (export "
                   f"meanwhile {fs.meanwhile_seconds:.1f} s), export {res.export_seconds:.1f} s, measure "
                   f"{res.measure_seconds:.1f} s, calibration {cal_s:.1f} s, ray stop "
                   f"{fs.ray_stop_seconds:.1f} s; {res.stolen} task(s) stolen, {res.returned} returned; "
                   f"{rounds} round(s); "
                   + ("drift guard off" if guard is None else f"drift guard: {res.drift['checks']} checks, "
                      f"{res.drift['drifts']} drifted, {res.drift['remeasured']} re-taken"))
        for x in luts:
            c = x["calibration"]
            click.echo(f"calibration of {x['device']}: " + (
                c["status"] if c["status"] != "fitted" else
                f"fitted on {c['models']} models in {c['seconds']:.1f} s: {100 * c['cv_within_10']:.0f}% within "
                f"10% ({c['folds']}-fold CV; plain sum {100 * c['plain_within_10']:.0f}%)"))
        for label, why in res.dropped.items():
            click.echo(f"dropped {label}: {why}", err=True)
    lost = [x for x in luts if x["left"]]
    if lost:
        raise FarmError(f"every device of {', '.join(x['device'] for x in lost)} dropped out with "
                        f"{sum(x['left'] for x in lost)} task(s) left; what was measured is in the store "
                        f"{store_path}: rerun the same command to resume")
