"""fbnet-lut predict"""

from __future__ import annotations

from pathlib import Path

import click

from latency_lut.cli._common import (
    default_store,
    dtype_option,
    echo_json,
    lut_space,
    parse_shape,
    space_option,
    store_option,
    table,
)
from latency_lut.models import load_model


@click.command()
@click.option("--lut", "lut_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="LUT file to predict from.")
@click.option("--arch", "-a", "archs", multiple=True,
              help="A named architecture of the LUT's space (fbnet_a, mobilenetv3_large, ...) or one candidate "
                   "name/index per layer, separated by spaces or commas. Repeat for several architectures.")
@click.option("--module", "-m", "module", default=None, metavar="PKG.MOD:FACTORY",
              help="A torch nn.Module: a factory (called without arguments) or module object, given as "
                   "pkg.mod:name or path/to/file.py:name.")
@click.option("--onnx", "onnx_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="An ONNX model file (fixed input shape; a symbolic batch is taken as 1).")
@click.option("--input-shape", default=None, metavar="N,C,H,W",
              help="Input shape for --module [default: 1,3,R,R with R the LUT's resolution].")
@click.option("--measure-missing", is_flag=True,
              help="Measure ops the LUT lacks on the LUT's device, add them to the store and rewrite the LUT file.")
@space_option
@dtype_option(None, "Precision the prediction is for; an error unless it is the LUT's (an int8 LUT prices int8 "
                    "models only) [default: the LUT's].")
@store_option
@click.option("--summary", is_flag=True, help="Only the totals, no per-op breakdown.")
@click.option("--json", "as_json", is_flag=True, help="Print predictions (with breakdown) as JSON.")
def predict(lut_path: Path, archs: tuple[str, ...], module: str | None, onnx_path: Path | None,
            input_shape: str | None, measure_missing: bool, space: str | None, dtype: str | None,
            store: Path | None, summary: bool, as_json: bool) -> None:
    """Predict whole-model latency from a LUT: architectures of its space, a torch module, or an ONNX file.

    The total is the sum of the LUT medians of the model's ops, corrected by the LUT's calibration when it has one
    ('fbnet-lut validate --calibrate'; the plain sum stays in the JSON as raw_total_ms); p10/p90 give a spread.
    A torch module or ONNX graph is decomposed into LUT ops (conv + BN + activation, squeeze-excite, shuffle,
    pools, adds, blocks of the search space as whole blocks). An op the LUT lacks is an error listing the missing
    keys, never a zero; with --measure-missing they are measured on the LUT's device instead.

    \b
    Examples:
      fbnet-lut predict --lut profiles/local-onnxruntime-224.json -a fbnet_a -a fbnet_b -a fbnet_c
      fbnet-lut predict --lut L.json -a "k3_e1 k3_e6 skip k3_e1 ..." --json
      fbnet-lut predict --lut L.json --module mymodels:mobilenet_v2 --measure-missing
      fbnet-lut predict --lut L.json --onnx model.onnx --summary
    """
    from latency_lut.calibration import describe
    from latency_lut.extend import measurer
    from latency_lut.lut import load
    from latency_lut.outputs import check_outputs
    from latency_lut.predict import predict as _predict
    from latency_lut.predict import predict_module, predict_onnx
    from latency_lut.quantize import check_lut_dtype

    given = sum(bool(x) for x in (archs, module, onnx_path))
    if given != 1:
        raise click.UsageError("give exactly one of --arch, --module or --onnx")
    if input_shape and not module:
        raise click.UsageError("--input-shape applies to --module only")
    st = store or default_store()
    if measure_missing:  # the LUT is rewritten in place with what was measured
        check_outputs({"--lut": lut_path}, inputs={"--onnx": onnx_path}, store=st)
    lut = load(lut_path)
    check_lut_dtype(lut.header, dtype, lut.name)
    before = len(lut)
    measure = measurer(st) if measure_missing else None
    if archs:
        sp = lut_space(lut, space)
        preds = [_predict(lut, a, sp) for a in archs]
    elif module:
        model = load_model(module)
        shape = parse_shape(input_shape) if input_shape else None
        preds = [predict_module(lut, model, shape, measure=measure, name=module)]
    else:
        preds = [predict_onnx(lut, onnx_path, measure=measure)]
    for p in preds:
        for note in p.notes:
            click.echo(f"note: {note}", err=True)
    added = len(lut) - before
    if added:
        lut.save(lut_path)
        click.echo(f"measured {added} missing op(s) on {lut.header['device']}; added to {st} and {lut_path}",
                   err=True)
    if as_json:
        echo_json({"lut": str(lut_path), "device": lut.header["device"], "runtime": lut.header["runtime"],
                   "unit": "ms", "measured_missing": added, "calibrated": lut.header.get("calibration") is not None,
                   "calibration": describe(lut.header, str(lut_path)), "predictions": [p.to_dict() for p in preds]})
        return
    if not summary:
        for p in preds:
            rows = [[o.label, o.choice, o.key, o.ms, 100 * o.ms / p.total_ms if p.total_ms else 0.0,
                     o.flops / 1e6, ", ".join(x for x in ("noisy" if o.flagged else "", o.note) if x)]
                    for o in p.ops]
            click.echo(f"{p.arch}: {p.total_ms:.3f} ms")
            click.echo(table(rows, ["layer" if archs else "op", "choice" if archs else "kind", "key", "ms", "%",
                                    "MMACs", "note"]))
            click.echo()
    rows = [[p.arch, p.total_ms, p.p10_ms, p.p90_ms, p.flops / 1e6] for p in preds]
    click.echo(table(rows, ["model" if not archs else "arch", "predicted ms", "p10 sum", "p90 sum", "MMACs"]))
    click.echo(f"({lut.header['device']}, {lut.header['runtime']} {lut.header['runtime_version']}, "
               f"{lut.header['threads']} thread(s))")
    click.echo(describe(lut.header, str(lut_path)))
