"""Whole-model latency from a LUT: the sum of an architecture's ops, with a per-layer breakdown.

An op the LUT does not hold is an error that lists every missing key; it is never counted as zero. An identity
skip is the one op that costs nothing by construction, and it is shown as such in the breakdown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from latency_lut.calibration import calibrated_total
from latency_lut.errors import LUTFormatError, UnknownOpError
from latency_lut.lut import LUT
from latency_lut.spaces import Architecture, SearchSpace, get_space


@dataclass(frozen=True)
class OpCost:
    label: str
    choice: str
    key: str
    ms: float
    p10: float
    p90: float
    flops: int
    flagged: bool = False


@dataclass(frozen=True)
class Prediction:
    arch: str
    choices: tuple[str, ...]
    total_ms: float
    p10_ms: float
    p90_ms: float
    flops: int
    ops: tuple[OpCost, ...]
    raw_total_ms: float | None = None  # the plain sum of medians; total_ms differs when the LUT is calibrated

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "choices": list(self.choices), "total_ms": self.total_ms,
                "p10_ms": self.p10_ms, "p90_ms": self.p90_ms, "flops": self.flops,
                "raw_total_ms": self.raw_total_ms, "ops": [asdict(o) for o in self.ops]}

    def to_dataframe(self):  # -> pandas.DataFrame
        import pandas as pd

        df = pd.DataFrame([asdict(o) for o in self.ops])
        df["share"] = df["ms"] / self.total_ms if self.total_ms > 0 else 0.0
        return df


def space_of(lut: LUT) -> SearchSpace:
    """The search space a LUT was built for, from its header."""
    sp = lut.header.get("space") or {}
    try:
        return get_space(sp["name"], int(sp["resolution"]), float(sp["width"]))
    except (KeyError, TypeError, ValueError):
        raise LUTFormatError(f"{lut.name}: header field 'space' does not name a search space") from None


def check_space(lut: LUT, space: SearchSpace) -> None:
    lsp = space_of(lut)
    if lsp.id != space.id:
        raise LUTFormatError(
            f"{lut.name} was built for {lsp.id}, not {space.id}; build a LUT for that space with "
            f"'fbnet-lut build --resolution {space.resolution} --width {space.width:g}'"
        )


def predict(lut: LUT, arch: str | Architecture | Sequence[int | str], space: SearchSpace | None = None) -> Prediction:
    """Predicted latency (ms) of one architecture: the sum of the LUT medians of its ops."""
    if space is None:
        space = space_of(lut)
    else:
        check_space(lut, space)
    a = space.parse_arch(arch)
    rows = space.arch_ops(a)
    missing = sorted({spec.key for _, _, spec in rows if not spec.is_identity and spec.key not in lut})
    if missing:
        raise UnknownOpError(
            f"{lut.name} lacks {len(missing)} op(s) of {a.name}: {', '.join(missing)}; rebuild the LUT for this "
            "space with 'fbnet-lut build' (it measures only what is missing)", missing,
        )
    ops: list[OpCost] = []
    for label, choice, spec in rows:
        if spec.is_identity:
            ops.append(OpCost(label, choice, spec.key, 0.0, 0.0, 0.0, 0))
            continue
        e = lut[spec.key]
        ops.append(OpCost(label, choice, spec.key, e.stats.median, e.stats.p10, e.stats.p90, spec.flops, e.flagged))
    # Calibration hook (latency_lut/calibration.py): the header's correction maps the raw sum to the total;
    # p10/p90 are scaled alike. Without a calibration the total is the raw sum.
    raw = sum(o.ms for o in ops)
    total = calibrated_total(lut, [(spec, o.ms) for (_, _, spec), o in zip(rows, ops)], raw)
    scale = total / raw if raw > 0 else 1.0
    return Prediction(
        arch=a.name, choices=tuple(space.choice_names(a)), total_ms=total,
        p10_ms=scale * sum(o.p10 for o in ops), p90_ms=scale * sum(o.p90 for o in ops),
        flops=sum(o.flops for o in ops), ops=tuple(ops), raw_total_ms=raw,
    )
