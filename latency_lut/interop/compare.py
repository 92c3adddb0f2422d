"""How differently two or more LUTs of one search space price its ops and rank its architectures.

:func:`compare` samples N architectures uniformly (one candidate per layer, seeded), prices them with each LUT
(the batch predictor, so each LUT's own rules hold: calibration, priced identities), and reports

- per op: its latency under each LUT and the ratio to the first LUT, normalized by the median ratio over all
  ops, so that 1.5 means "this op is 50% slower, relative to everything else, on that device";
- per pair of LUTs: Kendall's tau-b and Spearman's rho of the N totals, and the overlap of their 1% fastest;
- per pair: the architectures whose rank differs most.

LUTs must be of one space; LUTs of one space at different resolutions are compared only when asked
(``across_resolutions``): the same architecture choices are then priced at each LUT's resolution, and ops are
matched by their position (layer and candidate) instead of their key.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latency_lut.errors import LatencyLutError
from latency_lut.lut import LUT
from latency_lut.predict import arch_table
from latency_lut.spaces import SearchSpace

if TYPE_CHECKING:
    import numpy as np


class CompareError(LatencyLutError):
    """LUTs that cannot be compared: other spaces, resolutions or units, or too few of them."""


@dataclass(frozen=True)
class OpRow:
    op: str  # the op's key in the first LUT (with a position label when resolutions differ)
    ms: tuple[float, ...]  # latency under each LUT, in its unit
    ratio: tuple[float, ...]  # ms / ms of the first LUT
    relative: tuple[float, ...]  # ratio / the LUT's median ratio over all ops (1.0 = as slow as usual)


@dataclass(frozen=True)
class PairAgreement:
    a: int
    b: int
    kendall_tau: float
    spearman: float
    top_overlap: float  # share of the top-1% fastest of a that are also in the top-1% of b
    top_k: int


@dataclass(frozen=True)
class RankShift:
    pair: tuple[int, int]
    choices: tuple[str, ...]
    ms: tuple[float, float]
    rank: tuple[int, int]  # 1 = fastest of the N sampled


@dataclass
class Comparison:
    names: list[str]
    space: str
    n: int
    seed: int
    unit: str
    ops: list[OpRow]
    pairs: list[PairAgreement]
    shifts: list[RankShift]
    totals: Any = field(repr=False)  # float64 [n, luts]: each sampled architecture's total under each LUT
    archs: Any = field(repr=False)  # int [n, layers]

    def to_dict(self) -> dict[str, Any]:
        return {
            "luts": self.names, "space": self.space, "n": self.n, "seed": self.seed, "unit": self.unit,
            "pairs": [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in vars(p).items()}
                      for p in self.pairs],  # tau and rho are NaN when a LUT gives every architecture one total
            "ops": [{"op": r.op, "ms": list(r.ms), "ratio": _finite(r.ratio), "relative": _finite(r.relative)}
                    for r in self.ops],
            "rank_shifts": [{"pair": list(s.pair), "choices": list(s.choices), "ms": list(s.ms),
                             "rank": list(s.rank)} for s in self.shifts],
        }

    def ops_dataframe(self):  # -> pandas.DataFrame
        import pandas as pd

        rows = []
        for r in self.ops:
            row: dict[str, Any] = {"op": r.op}
            for i, name in enumerate(self.names):
                row[f"ms {name}"] = r.ms[i]
                if i:
                    row[f"ratio {name}"] = r.ratio[i]
                    row[f"relative {name}"] = r.relative[i]
            rows.append(row)
        return pd.DataFrame(rows)

    def pairs_dataframe(self):  # -> pandas.DataFrame
        import pandas as pd

        return pd.DataFrame([{"a": self.names[p.a], "b": self.names[p.b], "kendall_tau": p.kendall_tau,
                              "spearman": p.spearman, "top1pct_overlap": p.top_overlap, "top_k": p.top_k}
                             for p in self.pairs])


def _finite(xs: Sequence[float]) -> list[float | None]:
    """Ratios for strict JSON: None where the first LUT prices an op at 0 (no ratio exists)."""
    return [x if math.isfinite(x) else None for x in xs]


def compare(luts: Sequence[LUT], n: int = 10000, seed: int = 0, k: int = 10,
            across_resolutions: bool = False) -> Comparison:
    """Compare LUTs of one space over ``n`` sampled architectures; ``k`` rank shifts per pair."""
    import numpy as np

    if len(luts) < 2:
        raise CompareError("compare needs at least two LUTs")
    if n < 2:
        raise CompareError(f"compare needs at least 2 sampled architectures, got n={n}")
    tables = [arch_table(lut) for lut in luts]  # each on its LUT's own space (built once: spaces are not cheap)
    spaces = [t.space for t in tables]
    first = spaces[0]
    for lut, sp in zip(luts[1:], spaces[1:]):
        if sp.name != first.name or sp.width != first.width or sp.fingerprint != first.fingerprint:
            raise CompareError(f"{lut.name} is a LUT of space {sp.id}, {luts[0].name} of {first.id}; compare LUTs of "
                               "one space")
        if sp.resolution != first.resolution and not across_resolutions:
            raise CompareError(
                f"{lut.name} is at resolution {sp.resolution}, {luts[0].name} at {first.resolution}; to rank the same "
                "architecture choices at different resolutions, pass --across-resolutions"
            )
    units = {str(lut.header.get("unit", "ms")) for lut in luts}
    if len(units) > 1:
        raise CompareError(f"the LUTs are in different units ({', '.join(sorted(units))}); compare like with like")
    rng = np.random.default_rng(seed)
    counts = np.array([len(layer.candidates) for layer in first.layers()])  # lists may differ in length per layer
    archs = rng.integers(0, counts[None, :], size=(n, len(counts)), dtype=np.int64)
    totals = np.stack([t.predict(archs) for t in tables], axis=1)
    ranks = np.stack([_ranks(totals[:, i]) for i in range(len(luts))], axis=1)
    pairs, shifts = [], []
    for a, b in itertools.combinations(range(len(luts)), 2):
        pairs.append(_agreement(totals[:, a], totals[:, b], ranks[:, a], ranks[:, b], a, b))
        diff = np.abs(ranks[:, a] - ranks[:, b])
        for i in np.argsort(-diff, kind="stable")[:k]:
            shifts.append(RankShift((a, b), tuple(first.choice_names(first.parse_arch(archs[i].tolist()))),
                                    (float(totals[i, a]), float(totals[i, b])),
                                    (int(ranks[i, a]), int(ranks[i, b]))))
    res = sorted({sp.resolution for sp in spaces})
    what = first.id if len(res) == 1 else (f"{first.name} at resolutions {', '.join(map(str, res))} (the same choices "
                                           "priced at each LUT's resolution)")
    return Comparison([lut.name for lut in luts], what, n, seed,
                      units.pop(), _op_rows(luts, spaces, across_resolutions), pairs, shifts, totals, archs)


def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, method="min").astype(int)


def _agreement(x: np.ndarray, y: np.ndarray, rx: np.ndarray, ry: np.ndarray, a: int, b: int) -> PairAgreement:
    import numpy as np
    from scipy.stats import kendalltau, spearmanr

    tau = float(kendalltau(x, y).statistic)
    rho = float(spearmanr(x, y).statistic)
    top = max(1, len(x) // 100)
    fa = set(np.argsort(x, kind="stable")[:top].tolist())
    fb = set(np.argsort(y, kind="stable")[:top].tolist())
    return PairAgreement(a, b, tau, rho, len(fa & fb) / top, top)


def _op_rows(luts: Sequence[LUT], spaces: Sequence[SearchSpace], by_position: bool) -> list[OpRow]:
    """One row per op of the space: its LUT entry (median) under each LUT; identities only if every LUT prices them.

    Ops are matched by key, or by position (layer and candidate; stem, head, pool, fc) when resolutions differ.
    """
    import numpy as np

    rows: dict[str, list[float]] = {}

    def add(label: str, specs: Sequence[Any]) -> None:
        if any(s.is_identity and s.key not in lut for s, lut in zip(specs, luts)):
            return  # an identity some LUT leaves at its structural zero: no ratio to show
        rows.setdefault(label, [lut.latency(s.key) if s.key in lut else 0.0 for s, lut in zip(specs, luts)])

    layers = [sp.layers() for sp in spaces]
    for li, layer in enumerate(layers[0]):
        for ci, cand in enumerate(layer.candidates):
            specs = [sp.candidate_spec(ls[li], ci) for sp, ls in zip(spaces, layers)]
            add(f"layer{layer.index}:{cand} {specs[0].key}" if by_position else specs[0].key, specs)
    fixed = [[("stem", s) for s in sp.stem_specs()] + [("head", s) for s in sp.tail_specs()] for sp in spaces]
    for pos, (name, spec) in enumerate(fixed[0]):
        specs = [f[pos][1] for f in fixed]
        add(f"{name} {spec.key}" if by_position else spec.key, specs)
    ms = np.array(list(rows.values()))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = ms / ms[:, :1]
        relative = ratio / np.nanmedian(np.where(np.isfinite(ratio), ratio, np.nan), axis=0)
    return [OpRow(label, tuple(map(float, ms[i])), tuple(map(float, ratio[i])), tuple(map(float, relative[i])))
            for i, label in enumerate(rows)]


def scatter_png(cmp: Comparison, path: str | Path) -> Path:
    """One panel per pair: each sampled architecture's total under the two LUTs, with tau and rho."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from latency_lut.lut import check_output_path

    out = check_output_path(path)
    npairs = len(cmp.pairs)
    cols = min(3, npairs)
    rows = (npairs + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.0 * rows), squeeze=False)
    for ax, p in zip(axes.flat, cmp.pairs):
        x, y = cmp.totals[:, p.a], cmp.totals[:, p.b]
        ax.scatter(x, y, s=2, alpha=0.3, linewidths=0)
        ax.set_xlabel(f"{_short(cmp.names[p.a])} ({cmp.unit})")
        ax.set_ylabel(f"{_short(cmp.names[p.b])} ({cmp.unit})")
        ax.set_title(f"tau {p.kendall_tau:.3f}  rho {p.spearman:.3f}  top1% {p.top_overlap:.0%}", fontsize=9)
    for ax in list(axes.flat)[npairs:]:
        ax.axis("off")
    fig.suptitle(f"{cmp.n} sampled architectures of {cmp.space} (seed {cmp.seed})", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _short(name: str) -> str:
    return Path(name).name if "/" in name else name
