"""Accuracy statistics of latency predictions against measurements.

Errors are relative: ``(predicted - measured) / measured``, so a positive error is an over-estimate. Pure Python
(no numpy/scipy), so that the summary a LUT header carries is computed the same way everywhere.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


def relative_errors(predicted: Sequence[float], measured: Sequence[float]) -> list[float]:
    if len(predicted) != len(measured):
        raise ValueError(f"{len(predicted)} predictions for {len(measured)} measurements")
    out = []
    for p, m in zip(predicted, measured):
        if not (math.isfinite(p) and math.isfinite(m)) or m <= 0:
            raise ValueError(f"cannot compare prediction {p} with measurement {m}")
        out.append((p - m) / m)
    return out


def share_within(errors: Sequence[float], tolerance: float) -> float:
    """Fraction of relative errors with ``|e| <= tolerance`` (a tiny epsilon absorbs float rounding at the edge)."""
    if not errors:
        return math.nan
    return sum(abs(e) <= tolerance + 1e-12 for e in errors) / len(errors)


def rmspe(errors: Sequence[float]) -> float:
    """Root mean squared relative error (a fraction: 0.05 = 5%)."""
    return math.sqrt(sum(e * e for e in errors) / len(errors)) if errors else math.nan


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b: rank agreement of two sequences, corrected for ties (as scipy.stats.kendalltau).

    O(n^2), which is nothing for the hundred-odd models of a validation run. NaN when either side is constant.
    """
    n = len(x)
    if n != len(y):
        raise ValueError("kendall_tau needs sequences of equal length")
    concordant = discordant = ties_x = ties_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue  # tied in both: counts in neither denominator term
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denom = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denom if denom > 0 else math.nan


@dataclass(frozen=True)
class Accuracy:
    """Summary of one predictor on one set of models. Shares and errors are fractions (0.05 = 5%)."""

    n: int
    within_5: float
    within_10: float
    rmspe: float
    mean_error: float  # mean signed relative error; negative = the predictor under-estimates
    max_abs_error: float
    kendall_tau: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v) for k, v in asdict(self).items()}


def accuracy(predicted: Sequence[float], measured: Sequence[float]) -> Accuracy:
    errs = relative_errors(predicted, measured)
    return Accuracy(
        n=len(errs),
        within_5=share_within(errs, 0.05),
        within_10=share_within(errs, 0.10),
        rmspe=rmspe(errs),
        mean_error=statistics.fmean(errs) if errs else math.nan,
        max_abs_error=max((abs(e) for e in errs), default=math.nan),
        kendall_tau=kendall_tau(list(predicted), list(measured)) if len(errs) >= 2 else math.nan,
    )


def spread(values: Sequence[float]) -> float:
    """Relative spread of repeated measurements of one model: (max - min) / median of the round medians.

    This is the measurement noise a prediction error should be read against: two measurements of the *same*
    model disagree by about this much.
    """
    xs = [float(v) for v in values]
    if len(xs) < 2:
        return math.nan
    med = statistics.median(xs)
    return (max(xs) - min(xs)) / med if med > 0 else math.nan


def robust_cv(values: Sequence[float]) -> float:
    """Median absolute deviation scaled to one sigma, over the median (robust to one preempted round)."""
    xs = [float(v) for v in values]
    if len(xs) < 2:
        return math.nan
    med = statistics.median(xs)
    mad = statistics.median(abs(v - med) for v in xs)
    return 1.4826 * mad / med if med > 0 else math.nan
