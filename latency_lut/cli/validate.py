"""fbnet-lut validate"""

from __future__ import annotations

import math
from pathlib import Path

import click

from latency_lut.cli._common import (
    JOBS,
    ClickProgress,
    check_weights,
    default_store,
    dtype_option,
    echo_json,
    lut_space,
    space_option,
    store_option,
    table,
    weights_option,
)

_OPTIONAL_PATH = dict(is_flag=False, flag_value="-", default=None, type=click.Path(dir_okay=False, path_type=Path))


def _pct(v: float | None) -> str:
    return "" if v is None or not math.isfinite(v) else f"{100 * v:+.1f}%"


@click.command()
@click.option("--device", "-d", default="local", show_default=True,
              help="Device the LUT was built on (name or descriptor .yaml); must match the LUT's header.")
@click.option("--lut", "lut_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="LUT file to validate; its header receives the summary (and the calibration).")
@click.option("--n", "n", default=50, show_default=True, type=click.IntRange(2, 10_000),
              help="Random architectures (plus FBNet-A/B/C).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**63 - 1),
              help="Seed of the architecture sample.")
@click.option("--rounds", default=5, show_default=True, type=click.IntRange(1, 1000),
              help="Interleaved rounds; a model's latency is the median of its round medians.")
@click.option("--calibrate", is_flag=True,
              help="Fit a calibration on these models (k-fold cross-validated numbers are reported) and store it "
                   "in the LUT; later predictions apply it.")
@click.option("--folds", default=5, show_default=True, type=click.IntRange(2, 100),
              help="Cross-validation folds for --calibrate.")
@click.option("--no-named", is_flag=True, help="Only random architectures (skip FBNet-A/B/C).")
@click.option("--csv", "csv_path", help="Write per-model rows as CSV [default path: LUT-validation.csv].",
              **_OPTIONAL_PATH)
@click.option("--plot", "plot_path", help="Write a predicted-vs-measured PNG [default path: LUT-validation.png].",
              **_OPTIONAL_PATH)
@click.option("--module", "-m", "modules", multiple=True, metavar="PKG.MOD:FACTORY",
              help="Validate on this torch model instead of the space's architectures (repeat for several).")
@click.option("--onnx", "onnx_files", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Validate on this ONNX model (repeat for several).")
@click.option("--models", "models_file", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="A file listing models, one per line: pkg.mod:factory, file.py:factory or model.onnx, "
                   "optionally followed by N,C,H,W.")
@click.option("--input-shape", default=None, metavar="N,C,H,W",
              help="Input shape of --module models [default: 1,C,R,R, R the LUT's resolution].")
@click.option("--measure-missing", is_flag=True,
              help="With models: measure the units their predictions lack first (added to the store and the LUT).")
@space_option
@dtype_option(None, "Precision of the whole models [default: the LUT's]; must be the LUT's (an int8 LUT validates "
                    "int8 networks).")
@weights_option
@store_option
@click.option("--jobs", "-j", default=1, show_default=True, type=JOBS, help="Parallel export processes.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print rows and summary as JSON.")
def validate(device: str, lut_path: Path, n: int, seed: int, rounds: int, calibrate: bool, folds: int,
             no_named: bool, csv_path: Path | None, plot_path: Path | None, modules: tuple[str, ...],
             onnx_files: tuple[Path, ...], models_file: Path | None, input_shape: str | None,
             measure_missing: bool, space: str | None, dtype: str | None, weights: str, store: Path | None,
             jobs: int, quiet: bool, as_json: bool) -> None:
    """Measure whole models end to end and compare them with the LUT's predictions.

    N architectures are sampled uniformly (seeded) plus FBNet-A/B/C, built from the same blocks as the LUT,
    exported for the LUT's runtime and measured on its device with its protocol, in interleaved rounds. Reports
    per-model errors, the share within +-5%/+-10%, RMSPE, mean signed error, Kendall's tau and the measurement
    noise (spread of a model's round medians). Models a calibration was fitted on are shown but not scored.

    With --module, --onnx or --models the models are yours instead: any torch module or ONNX file, decomposed and
    priced by the LUT (plain and calibrated), measured end to end the same way, reported in the same form.

    \b
    Examples:
      fbnet-lut validate --lut profiles/local-onnxruntime-224.json --csv --plot
      fbnet-lut validate --lut L.json --n 60 --seed 1 --calibrate      # fit, store in L.json
      fbnet-lut validate --lut L.json --n 30 --seed 2                  # held-out check of that calibration
      fbnet-lut validate --lut L.json -m geffnet:mobilenetv2_100 -m geffnet:efficientnet_b0 --measure-missing
      fbnet-lut validate --lut L.json --models zoo.txt --csv --plot
    """
    from latency_lut.backends import create_backend
    from latency_lut.devices import get_device
    from latency_lut.lut import load
    from latency_lut.outputs import check_outputs
    from latency_lut.quantize import check_lut_dtype
    from latency_lut.store import Store
    from latency_lut.validate import (
        check_device,
        default_output,
        record,
        run_validation,
        validate_models,
        write_csv,
        write_plot,
    )

    lut = load(lut_path)
    lut_space(lut, space)  # --space must agree with the space the LUT embeds
    dtype = check_lut_dtype(lut.header, dtype, lut.name)
    dev = get_device(device)
    check_device(lut, dev)
    csv_out = default_output(lut, ".csv") if csv_path == Path("-") else csv_path
    plot_out = default_output(lut, ".png") if plot_path == Path("-") else plot_path
    store = store or default_store()
    units = _model_units(modules, onnx_files, models_file, input_shape, lut, weights)
    if weights == "cold" and not units:
        raise click.UsageError("--weights cold times whole models given with --module/--onnx/--models; the space's "
                               "architectures are validated as the calibration was fitted (hot)")
    inputs = {f"--onnx {f}": f for f in onnx_files} | {"--models": models_file}
    check_outputs({"--lut": lut_path, "--csv": csv_out, "--plot": plot_out}, inputs=inputs, store=store)
    if units and calibrate:
        raise click.UsageError("--calibrate fits on the space's architectures; run it without --module/--onnx/"
                               "--models, then validate your models against the calibrated LUT")
    check_weights(weights, dev, lut.header["runtime"])
    backend = create_backend(dev, lut.header["runtime"], dtype, threads=int(lut.header["threads"]))
    try:
        with Store(store) as st:
            if units:
                rep = validate_models(lut, dev, backend, units, rounds=rounds, seed=seed, store=st,
                                      store_path=store, measure_missing=measure_missing,
                                      progress=ClickProgress(quiet or as_json))
            else:
                rep = run_validation(lut, dev, backend, n=n, seed=seed, rounds=rounds, jobs=jobs,
                                     named=not no_named, store=st, progress=ClickProgress(quiet or as_json),
                                     do_calibrate=calibrate, folds_k=folds)
    finally:
        backend.close()
    if units:
        lut.header["validation_models"] = rep.summary
    else:
        record(lut, rep)
    lut.save(lut_path)
    if csv_out:
        write_csv(rep.rows, csv_out)
    if plot_out:
        h = lut.header
        title = f"{h['device']} {h['runtime']} {h['space'].get('id', '')}, {len(rep.rows)} models"
        write_plot(rep.rows, plot_out, title)
    s = rep.summary
    if as_json:
        echo_json({"lut": str(lut_path), "csv": str(csv_out) if csv_out else None,
                   "plot": str(plot_out) if plot_out else None, "summary": s,
                   "calibration": rep.calibration.to_dict() if rep.calibration else None,
                   "rows": [r.to_dict() for r in rep.rows]})
        return
    body = [[r.label, r.flops / 1e6, r.plain_ms or "", r.predicted_ms or "", r.measured_ms or "",
             _pct(r.error), "" if r.noise is None else f"{100 * r.noise:.1f}%",
             "" if r.held_out else "fitted", "" if r.ok else r.status[:60]]
            for r in rep.rows]
    click.echo(table(body, ["model", "MMACs", "plain ms", "predicted ms", "measured ms", "error", "noise", "set",
                            "note"]))
    click.echo()
    click.echo(summary_table(s))
    if isinstance(s.get("host_factor"), (int, float)):
        click.echo(f"host: the LUT's reference op ran x{s['host_factor']:.3f} its LUT time during these measurements "
                   f"({s['host_observations']} re-timings; above 1: the machine was slower than at the build)")
    if not s.get("settings_match", True):
        click.echo("warning: runtime version, threads, exporter or protocol differ from the LUT's build; rebuild the "
                   "LUT with this setup for a fair comparison", err=True)
    for line in s["failed"]:
        click.echo(f"failed: {line}", err=True)
    for label, p in (("csv", csv_out), ("plot", plot_out)):
        if p:
            click.echo(f"{label}: {p}")
    click.echo(f"summary{' and calibration' if rep.calibration else ''} written to {lut_path}")


def _model_units(modules: tuple[str, ...], onnx_files: tuple[Path, ...], models_file: Path | None,
                 input_shape: str | None, lut, weights: str = "hot") -> list:  # noqa: ANN001 - LUT
    from latency_lut.cli._common import parse_shape
    from latency_lut.cli.measure import model_units
    from latency_lut.errors import LatencyLutError
    from latency_lut.predict import space_of
    from latency_lut.validate import read_model_list

    res = space_of(lut).resolution
    shape = parse_shape(input_shape) if input_shape else None
    units = model_units(modules, onnx_files, shape, res, weights)
    if models_file:
        for target, shp, no in read_model_list(models_file):
            try:
                units += model_units(() if target.endswith(".onnx") else (target,),
                                     (Path(target),) if target.endswith(".onnx") else (), shp or shape, res, weights)
            except LatencyLutError as e:
                raise LatencyLutError(f"{models_file} line {no}: {e}") from None
    return units


def summary_table(s: dict) -> str:
    """Accuracy of each predictor as rows, metrics as columns, with the measurement noise underneath."""
    preds: list[tuple[str, dict]] = []
    if "accuracy" in s and s.get("predictor") == "calibrated":
        preds.append(("calibrated (held out)", s["accuracy"]))
    if "plain_sum" in s:
        preds.append(("plain sum", s["plain_sum"]))
    fitrep = s.get("calibration_fit") or {}
    if fitrep:
        preds.append((f"calibrated ({fitrep['folds']}-fold CV)", fitrep["calibrated_cv"]))
        preds.append((f"FLOPs fit ({fitrep['folds']}-fold CV)", fitrep["flops_fit_cv"]))
    def f(v: float | None, spec: str, scale: float = 100.0, unit: str = "%") -> str:
        return "" if v is None or not math.isfinite(v) else f"{scale * v:{spec}}{unit}"

    rows = [[name, a["n"], f(a["within_10"], ".0f"), f(a["within_5"], ".0f"), f(a["rmspe"], ".1f"),
             f(a["mean_error"], "+.1f"), f(a["kendall_tau"], ".3f", 1.0, "")] for name, a in preds]
    out = table(rows, ["predictor", "models", "within 10%", "within 5%", "RMSPE", "mean error", "Kendall tau"],
                right=[False] + [True] * 6)
    nz = s.get("noise")
    if nz:
        out += (f"\nmeasurement noise (spread of a model's {s.get('rounds')} round medians): median "
                f"{100 * nz['median']:.1f}%, p90 {100 * nz['p90']:.1f}%, max {100 * nz['max']:.1f}%")
        if "split_tau" in nz:
            out += (f"\nodd vs even rounds of the same models (the best any predictor can score here): Kendall tau "
                    f"{nz['split_tau']:.3f}, RMS difference {100 * nz['split_rmspe']:.1f}%")
    if s.get("excluded_fitted"):
        out += f"\n{s['excluded_fitted']} model(s) the calibration was fitted on are not scored"
    return out
