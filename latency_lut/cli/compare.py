"""fbnet-lut compare"""

from __future__ import annotations

import math
from pathlib import Path

import click

from latency_lut.cli._common import echo_json, json_option, table
from latency_lut.outputs import check_outputs


@click.command()
@click.argument("luts", metavar="L1 L2 [L3...]", nargs=-1, required=True,
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--n", "n", type=click.IntRange(2, 1_000_000), default=10000, show_default=True,
              help="Architectures to sample (uniformly, one candidate per layer).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sample.")
@click.option("--top-k", "k", type=click.IntRange(0), default=10, show_default=True,
              help="Architectures whose rank differs most, per pair.")
@click.option("--ops", "n_ops", type=click.IntRange(0), default=12, show_default=True,
              help="Ops in the ratio table: those whose relative ratio is furthest from 1 (0 = all).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a scatter PNG of the sampled architectures, one panel per pair.")
@click.option("--across-resolutions", is_flag=True,
              help="Allow LUTs of one space at different resolutions: the same architecture choices are priced at "
                   "each LUT's resolution and ops are matched by layer and candidate.")
@json_option
def compare(luts: tuple[Path, ...], n: int, seed: int, k: int, n_ops: int, plot: Path | None,
            across_resolutions: bool, as_json: bool) -> None:
    """Compare LUTs of one search space: which ops are relatively slower where, and how alike they rank
    architectures (Kendall tau, Spearman, overlap of the 1% fastest) over N sampled architectures.

    'relative' is an op's ratio to the first LUT divided by the median ratio over all ops: 2.0 means twice as slow,
    relative to everything else, as on the first LUT's device.

    \b
    Example:
      fbnet-lut compare pixel3-224.json raspi4-224.json local-onnxruntime-224.json --plot compare.png
    """
    from latency_lut.errors import LatencyLutError
    from latency_lut.interop.compare import compare as _compare
    from latency_lut.interop.compare import scatter_png
    from latency_lut.lut import load

    if len(luts) < 2:
        raise click.UsageError("give at least two LUT files")
    if plot is not None:
        if any(plot.resolve() == p.resolve() for p in luts):
            raise LatencyLutError(f"--plot {plot} is one of the LUT files; choose another path")
        check_outputs({"--plot": plot}, inputs={f"L{i + 1}": p for i, p in enumerate(luts)})
    loaded = [load(p) for p in luts]
    cmp = _compare(loaded, n=n, seed=seed, k=k, across_resolutions=across_resolutions)
    if plot is not None:
        scatter_png(cmp, plot)
    if as_json:
        echo_json(cmp.to_dict())
        return
    names = [p.stem for p in luts]
    click.echo(f"{cmp.n} architectures of {cmp.space} sampled with seed {cmp.seed}; totals in {cmp.unit}")
    click.echo()
    click.echo(table([[names[p.a], names[p.b], p.kendall_tau, p.spearman, f"{p.top_overlap:.0%}"]
                      for p in cmp.pairs],
                     ["LUT a", "LUT b", "Kendall tau", "Spearman", f"top-1% overlap ({cmp.pairs[0].top_k})"],
                     right=[False, False, True, True, True]))
    click.echo()
    ops = sorted(cmp.ops, key=lambda r: -max(_dev(x) for x in r.relative[1:]))
    ops = ops[:n_ops] if n_ops else ops
    head = ["op", f"{names[0]} {cmp.unit}"]
    for name in names[1:]:
        head += [f"{name} {cmp.unit}", f"relative {name}"]
    rows = []
    for r in ops:
        row: list[object] = [r.op, r.ms[0]]
        for i in range(1, len(names)):
            row += [r.ms[i], r.relative[i]]
        rows.append(row)
    every = not n_ops or n_ops >= len(cmp.ops)
    title = "every op" if every else f"the {len(ops)} of {len(cmp.ops)} ops furthest from 1"
    click.echo(f"per-op latency and relative ratio to {names[0]} ({title}):")
    click.echo(table(rows, head))
    if cmp.shifts:
        click.echo()
        click.echo(f"architectures whose rank differs most (rank 1 = fastest of {cmp.n}):")
        click.echo(table([[names[s.pair[0]], names[s.pair[1]], s.rank[0], s.rank[1], s.ms[0], s.ms[1],
                           " ".join(s.choices)] for s in cmp.shifts],
                         ["LUT a", "LUT b", "rank a", "rank b", "a", "b", "choices"]))
    if plot is not None:
        click.echo(f"\nscatter plot: {plot}")


def _dev(x: float) -> float:
    """How far a relative ratio is from 1, symmetric in slower and faster; an op priced 0 somewhere sorts last."""
    return -1.0 if not x > 0 or not math.isfinite(x) else abs(math.log(x))
