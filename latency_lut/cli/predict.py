"""fbnet-lut predict"""

from __future__ import annotations

from pathlib import Path

import click

from latency_lut.cli._common import echo_json, table


@click.command()
@click.option("--lut", "lut_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="LUT file to predict from.")
@click.option("--arch", "-a", "archs", multiple=True, required=True,
              help="fbnet_a, fbnet_b, fbnet_c, or 22 candidate names/indices separated by spaces or commas. "
                   "Repeat for several architectures.")
@click.option("--summary", is_flag=True, help="Only the totals, no per-layer breakdown.")
@click.option("--json", "as_json", is_flag=True, help="Print predictions (with breakdown) as JSON.")
def predict(lut_path: Path, archs: tuple[str, ...], summary: bool, as_json: bool) -> None:
    """Predict whole-model latency of architectures from a LUT.

    The total is the sum of the LUT medians of the architecture's ops (stem, 22 layers, head, pool, fc).
    p10/p90 totals give a spread. An op the LUT lacks is an error listing the missing keys, never a zero.

    \b
    Examples:
      fbnet-lut predict --lut profiles/local-onnxruntime-224.json -a fbnet_a -a fbnet_b -a fbnet_c
      fbnet-lut predict --lut L.json -a "k3_e1 k3_e6 skip k3_e1 ..." --json
    """
    from latency_lut.lut import load
    from latency_lut.predict import predict as _predict

    lut = load(lut_path)
    preds = [_predict(lut, a) for a in archs]
    if as_json:
        echo_json({"lut": str(lut_path), "device": lut.header["device"], "runtime": lut.header["runtime"],
                   "unit": "ms", "predictions": [p.to_dict() for p in preds]})
        return
    if not summary:
        for p in preds:
            rows = [[o.label, o.choice, o.key, o.ms, 100 * o.ms / p.total_ms if p.total_ms else 0.0,
                     o.flops / 1e6, "noisy" if o.flagged else ""] for o in p.ops]
            click.echo(f"{p.arch}: {p.total_ms:.3f} ms")
            click.echo(table(rows, ["layer", "choice", "key", "ms", "%", "MMACs", "note"]))
            click.echo()
    rows = [[p.arch, p.total_ms, p.p10_ms, p.p90_ms, p.flops / 1e6] for p in preds]
    click.echo(table(rows, ["arch", "predicted ms", "p10 sum", "p90 sum", "MMACs"]))
    click.echo(f"({lut.header['device']}, {lut.header['runtime']} {lut.header['runtime_version']}, "
               f"{lut.header['threads']} thread(s))")
