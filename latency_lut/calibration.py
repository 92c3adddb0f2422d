"""Calibration: a small linear correction from the plain LUT sum to whole-model latency, fitted on networks.

Why a correction is needed (measured on this project's machines; see the README's validation section): an op
timed alone runs cache-hot, with its weights and input resident from the previous iteration, while inside a
network its weights were last touched a whole inference ago; and every op timed alone pays one runtime call
overhead, while a network pays one in total. Both effects are linear in things the LUT already knows, so the
correction is a linear model over *features of an architecture's op list*:

    calibrated_ms = sum_f  coef[f] * feature_f(ops)

with the features

    ``lut_ms``   the plain sum of the LUT medians (coefficient ~1: the LUT is right to first order),
    ``wparams``  millions of weights of the ops that are not identities (cold weights are re-read),
    ``ops``      the number of ops that are not identities (per-call overhead and per-op warm-up),
    ``grouped``  the number of ops with a channel shuffle (FBNet's grouped blocks, shuffle units: a
                 reshape-transpose whose input is cache-hot alone but not in a network; ~75 us per g2 block on ONNX
                 Runtime here). Only shuffles count: a depthwise conv or MixNet's split 1x1 has groups but no
                 shuffle, and counting them would carry the FBNet fit onto models it does not describe,
    ``const``    1 (the network's own call overhead, counted once).

The coefficients are fitted by ridge-regularized least squares on *relative* error, shrunk towards the identity
model (``lut_ms`` = 1, the rest 0), so a small or unrepresentative fitting set cannot move the prediction far from
the LUT. And a correction is applied only when it earns its keep out of sample (k-fold cross-validated error,
:func:`fit`): it must transfer to models of other families, which a fit of the noise of a few networks does not.
The fit stores the keys of the models it saw, so a later validation reports its numbers on models outside that
set only. The whole thing lives in the LUT header as plain JSON
(``calibration``), readable without this package, and the predictor applies it to the total (the raw sum stays
available).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from latency_lut.errors import LUTFormatError
from latency_lut.ops import OpSpec

METHOD = "linear-features-v1"
FEATURES = ("lut_ms", "wparams", "ops", "grouped", "const")
PRIOR = {"lut_ms": 1.0, "wparams": 0.0, "ops": 0.0, "grouped": 0.0, "const": 0.0}


def shuffles(spec: OpSpec) -> bool:
    """The op contains a channel shuffle (the ``grouped`` feature)."""
    return spec.spec_kind.shuffles(spec)


def features(op_ms: Iterable[tuple[OpSpec, float]]) -> dict[str, float]:
    """Features of one architecture from its (spec, LUT median ms) pairs; identities contribute nothing."""
    f = dict.fromkeys(FEATURES, 0.0)
    f["const"] = 1.0
    for spec, ms in op_ms:
        if spec.is_identity:
            continue
        f["lut_ms"] += float(ms)
        f["wparams"] += spec.params / 1e6
        f["ops"] += 1.0
        f["grouped"] += float(shuffles(spec))
    return f


@dataclass(frozen=True)
class Calibration:
    """A fitted correction; ``coef`` maps feature name to coefficient (ms per unit of the feature)."""

    coef: dict[str, float]
    fitted_on: tuple[str, ...] = ()  # keys of the networks the fit saw; validation excludes them
    ridge: float = 0.0
    train: dict[str, Any] = field(default_factory=dict)  # accuracy on the fitting set (for the record only)
    method: str = METHOD
    device: str = ""  # the device whose networks it was fitted on ("" in calibrations from before it was kept)
    cross_validated: dict[str, Any] = field(default_factory=dict)  # held-out accuracy of the fit (k-fold)
    source: dict[str, Any] = field(default_factory=dict)  # how its networks were measured (models, rounds, seed)
    selected: tuple[str, ...] | None = None  # the features the fit moved off their prior (None: not recorded)

    def apply(self, feats: Mapping[str, float]) -> float:
        return sum(self.coef.get(k, 0.0) * float(feats.get(k, 0.0)) for k in FEATURES)

    def op_ms(self, spec: OpSpec, ms: float) -> float:
        """One op's share of the calibrated total: every feature but ``const`` is a sum over ops, so the
        correction distributes over them exactly (the batch and DNAS tables use this)."""
        if spec.is_identity:
            return 0.0
        c = self.coef.get
        return (c("lut_ms", 0.0) * ms + c("wparams", 0.0) * spec.params / 1e6 + c("ops", 0.0)
                + c("grouped", 0.0) * float(shuffles(spec)))

    @property
    def const_ms(self) -> float:
        return self.coef.get("const", 0.0)

    def to_dict(self) -> dict[str, Any]:
        d = {"method": self.method, "features": list(FEATURES), "coef": dict(self.coef), "ridge": self.ridge,
             "fitted_on": list(self.fitted_on), "train": self.train,
             "formula": "calibrated_ms = " + " + ".join(f"coef[{k}] * {k}" for k in FEATURES)}
        d.update({k: v for k, v in (("device", self.device), ("cross_validated", self.cross_validated),
                                    ("source", self.source)) if v})
        if self.selected is not None:
            d["selected"] = list(self.selected)
        return d

    @classmethod
    def from_dict(cls, d: Any, source: str = "<LUT>") -> Calibration:
        if not isinstance(d, dict) or d.get("method") != METHOD or not isinstance(d.get("coef"), dict):
            raise LUTFormatError(
                f"{source}: header field 'calibration' is not a {METHOD} calibration; refit it with "
                "'fbnet-lut validate --calibrate' or set it to null"
            )
        coef = {}
        for k, v in d["coef"].items():
            if k not in FEATURES or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise LUTFormatError(f"{source}: calibration coefficient {k!r}={v!r} is not a known finite number")
            coef[k] = float(v)
        sel = d.get("selected")
        return cls(coef, tuple(d.get("fitted_on") or ()), float(d.get("ridge", 0.0)), dict(d.get("train") or {}),
                   device=str(d.get("device") or ""), cross_validated=dict(d.get("cross_validated") or {}),
                   source=dict(d.get("source") or {}),
                   selected=tuple(str(k) for k in sel) if isinstance(sel, list) else None)


def from_header(header: Mapping[str, Any], source: str = "<LUT>") -> Calibration | None:
    """The header's calibration (None when uncalibrated); one fitted on another device's networks is an error."""
    raw = header.get("calibration")
    if raw is None:
        return None
    cal = Calibration.from_dict(raw, source)
    if cal.device and cal.device != header.get("device"):
        raise LUTFormatError(
            f"{source}: its calibration was fitted on networks measured on device {cal.device!r}, but the LUT is "
            f"for device {header.get('device')!r}; refit it with 'fbnet-lut validate --device {header.get('device')}"
            f" --lut {source} --calibrate' or set header field 'calibration' to null"
        )
    return cal


def describe(header: Mapping[str, Any], source: str = "<LUT>") -> str:
    """One plain line on whether predictions from this LUT are calibrated, for ``show`` and ``predict``."""
    cal = from_header(header, source)
    if cal is None:
        return ("UNCALIBRATED: predictions are the plain sum of the entries (whole networks usually differ from it "
                "by several %); fit a calibration with 'fbnet-lut build' (without --no-calibrate) or "
                "'fbnet-lut validate --calibrate'")
    cv = cal.cross_validated.get("calibrated_cv") or {}
    how = (f", {cal.cross_validated.get('folds')}-fold CV {100 * cv['within_10']:.0f}% within 10%, RMSPE "
           f"{100 * cv['rmspe']:.1f}%" if cv else "")
    return f"calibrated on {len(cal.fitted_on)} whole networks{f' of {cal.device}' if cal.device else ''}{how}"


# A correction is applied only if it lowers the cross-validated RMS relative error by this fraction or more.
MIN_GAIN = 0.2
SELECTION_FOLDS = 5
SELECTION_REPEATS = 5


def fit(
    feats: Sequence[Mapping[str, float]], measured_ms: Sequence[float], keys: Sequence[str] = (),
    ridge: float = 0.05, *, select: bool = True, min_gain: float = MIN_GAIN,
) -> Calibration:
    """Least squares on relative error, ridge-shrunk towards :data:`PRIOR`, over the features that earn it.

    Minimizes ``sum_i ((x_i . c - y_i) / y_i)^2 + ridge * n * sum_f ((c_f - prior_f) * scale_f)^2`` where
    ``scale_f`` is feature f's typical size relative to the latency (so the penalty is in units of relative error
    and does not depend on the feature's unit).

    With ``select`` (and 4 models or more) the correction must earn its keep out of sample: unless the k-fold
    cross-validated RMS relative error of the fit is lower than the plain sum's by ``min_gain`` (a fraction) or
    more, the result is the identity (every feature at its prior). Why: fitted on 15 FBNet networks whose plain sums
    were already right to within their noise (ONNX Runtime, cold-weight units), the five coefficients fitted that
    noise and moved 4 of 12 zoo models further from their measurement (MobileNetV3-Small -3.1% -> -6.7%). A
    confirmed correction keeps all five features, ridge-shrunk: on one space's networks they are nearly collinear,
    and choosing one of them (a constant of 0.85 ms on LiteRT's, say) carried worse to models of other sizes
    (MobileNetV3-Small +36%) than the shrunk fit that spreads the correction over them (+2 models within 10%).
    """
    import numpy as np

    n = len(measured_ms)
    if n != len(feats):
        raise ValueError("one feature row per measurement")
    if n < 2:
        raise ValueError("a calibration needs at least 2 measured models")
    y = np.asarray(measured_ms, dtype=float)
    x = np.array([[float(f.get(k, 0.0)) for k in FEATURES] for f in feats])
    active = list(range(len(FEATURES)))
    if select and n >= 4 and _cv_rmspe(x, y, active, ridge) > (1.0 - min_gain) * _cv_rmspe(x, y, [], ridge):
        active = []  # not confirmed on held-out networks: the plain sum
    coef = {k: float(v) for k, v in zip(FEATURES, _solve(x, y, active, ridge))}
    chosen = tuple(FEATURES[i] for i in active) if select else None
    cal = Calibration(coef, tuple(keys), ridge, selected=chosen)
    from latency_lut.metrics import accuracy

    train = accuracy([cal.apply(f) for f in feats], list(y)).to_dict()
    return Calibration(coef, tuple(keys), ridge, train, selected=chosen)


def _solve(x: Any, y: Any, active: Sequence[int], ridge: float) -> Any:
    """The coefficients: the prior, plus the ridge least-squares correction on the ``active`` features."""
    import numpy as np

    prior = np.array([PRIOR[k] for k in FEATURES])
    if not active:
        return prior
    xw = x / y[:, None]  # relative-error weighting: each row divided by its measurement
    scale = np.sqrt(np.mean(xw**2, axis=0)) + 1e-12  # a feature's typical contribution per ms of latency
    cols = list(active)
    a = xw[:, cols] / scale[cols]
    r = np.ones(len(y)) - xw @ prior  # solve for d = c - prior, so the ridge pulls towards the prior
    lhs = a.T @ a + ridge * len(y) * np.eye(len(cols))
    coef = prior.copy()
    coef[cols] += np.linalg.solve(lhs, a.T @ r) / scale[cols]
    return coef


def _cv_rmspe(x: Any, y: Any, active: Sequence[int], ridge: float) -> float:
    """Repeated k-fold cross-validated RMS relative error of the fit on ``active`` (``SELECTION_REPEATS`` fixed
    fold assignments, every row held out once in each). One assignment alone decided a fit of 43 networks whose
    gain was near ``MIN_GAIN`` differently from the reported cross-validation (11% there): two cold builds of one
    LUT then applied a correction in one and not in the other, 4.8% apart on FBNet-A/B/C."""
    import numpy as np

    n = len(y)
    k = min(SELECTION_FOLDS, n)
    total = 0.0
    for rep in range(SELECTION_REPEATS):
        order = np.random.default_rng(rep).permutation(n)
        errs = np.empty(n)
        for f in range(k):
            test = order[f::k]
            train = np.setdiff1d(order, test)
            c = _solve(x[train], y[train], active, ridge)
            errs[test] = (x[test] @ c - y[test]) / y[test]
        total += float(np.mean(errs**2))
    return float(np.sqrt(total / SELECTION_REPEATS))


def calibrated_total(lut: Any, op_ms: Sequence[tuple[OpSpec, float]], raw_ms: float) -> float:
    """The predictor's hook: the LUT header's calibration applied to one architecture, or the raw sum."""
    cal = from_header(lut.header, lut.name)
    return raw_ms if cal is None else cal.apply(features(op_ms))
