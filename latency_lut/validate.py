"""End-to-end validation of a LUT: whole models measured on its device, compared with its predictions.

The flow: sample architectures (uniform, seeded, plus the space's named ones), build each whole model from the
same block definitions the LUT measured, export it for the LUT's runtime, measure it end to end with the LUT's
protocol on the LUT's device (through the same backend interface as ``build``, so every device kind works),
interleaved in rounds, and compare the median of round medians with the prediction.

Held-out discipline: a LUT's calibration records the networks it was fitted on; validation rows of those networks
are reported but left out of the summary. ``calibrate`` reports k-fold cross-validated numbers (each model
predicted by a fit that never saw it) before it fits the final calibration on all models.
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any
from typing import Protocol as _Protocol

from latency_lut import __version__
from latency_lut.build import config_for, reference_op
from latency_lut.calibration import Calibration, features, fit, from_header
from latency_lut.drift import DriftGuard, Watch, host_factor, observations
from latency_lut.errors import LatencyLutError, LUTFormatError, ValidationError
from latency_lut.export import export_many
from latency_lut.extend import measurer
from latency_lut.lut import LUT, check_output_path
from latency_lut.measure import Protocol, protocol_seconds
from latency_lut.metrics import accuracy, kendall_tau
from latency_lut.networks import (
    NetMeasurement,
    NetworkSpec,
    export_networks,
    measure_stored,
    sample_archs,
    stored_rounds,
)
from latency_lut.outputs import read_input
from latency_lut.predict import predict, space_of
from latency_lut.quantize import check_lut_dtype

MIN_MODELS = 2


@dataclass
class ModelRow:
    """One model of a validation run. Errors are relative, (predicted - measured) / measured."""

    label: str
    key: str
    choices: str
    flops: int
    plain_ms: float | None = None  # the raw LUT sum
    predicted_ms: float | None = None  # what the predictor returns (calibrated when the LUT is)
    measured_ms: float | None = None  # median of the round medians
    noise: float | None = None  # spread of the round medians, (max - min) / median
    rounds: int = 0
    held_out: bool = True  # False when the LUT's calibration was fitted on this model
    status: str = "ok"
    cv_ms: float | None = None  # cross-validated calibrated prediction (only with calibrate)
    round_ms: list[float] = field(default_factory=list)  # the per-round medians, in measurement order
    feats: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.measured_ms is not None and self.predicted_ms is not None

    @staticmethod
    def _err(p: float | None, m: float | None) -> float | None:
        return None if p is None or not m else (p - m) / m

    @property
    def error(self) -> float | None:
        return self._err(self.predicted_ms, self.measured_ms)

    @property
    def plain_error(self) -> float | None:
        return self._err(self.plain_ms, self.measured_ms)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "feats"}
        d.update(error=self.error, plain_error=self.plain_error, cv_error=self._err(self.cv_ms, self.measured_ms))
        return d


@dataclass
class ValidationReport:
    rows: list[ModelRow]
    summary: dict[str, Any]
    calibration: Calibration | None = None  # set when calibrate fitted a new one


# ---- checks ------------------------------------------------------------------------------------------------
def check_device(lut: LUT, device: Any) -> None:
    """A LUT is validated on the device and runtime it was built for, nothing else."""
    h = lut.header
    if h.get("device") != device.name:
        raise ValidationError(
            f"{lut.name} was built on device {h.get('device')!r}, not {device.name!r}; validate it with "
            f"--device {h.get('device')} or build a LUT for {device.name} first"
        )
    if h.get("device_kind", device.kind) != device.kind:
        raise ValidationError(
            f"{lut.name} was built on a {h.get('device_kind')} device; {device.name} is a {device.kind} device"
        )
    if device.runtimes and h.get("runtime") not in device.runtimes:
        raise ValidationError(
            f"{lut.name} was measured with runtime {h.get('runtime')!r}, which device {device.name!r} does not offer "
            f"({', '.join(device.runtimes)})"
        )


# ---- the run -----------------------------------------------------------------------------------------------
class Progress(_Protocol):
    """Receives progress: a phase starts with its total, then advances one model at a time (CLI bars)."""

    def start(self, phase: str, total: int) -> None: ...
    def advance(self, key: str) -> None: ...
    def finish(self) -> None: ...


def measure_models(
    lut: LUT, device: Any, backend: Any, nets: Sequence[NetworkSpec], *, rounds: int, seed: int, jobs: int = 1,
    store: Any | None = None, progress: Progress | None = None, tag: str = "validate",
    deadline: float | None = None, watch: Any = None,
) -> dict[str, NetMeasurement]:
    """Export and measure whole models with the LUT's protocol (stored rows carry ``tag`` in their extra).

    Each round goes into the store as it is taken (one accepted row per model and round), and rounds the store
    already holds for this configuration are reused: kill a validation and rerun it, and it resumes. A drift
    ``watch`` (:class:`latency_lut.drift.Watch`) observes its reference between the models (tagged ``tag``).
    """
    protocol = Protocol.from_dict(lut.header.get("protocol") or {})
    config = config_for(device, backend, protocol, lut.header.get("dtype", "fp32"))
    done = stored_rounds(store, config, nets) if store is not None else {}
    todo = [n for n in nets if len(done.get(n.key, {})) < rounds]
    arts: dict[str, Any] = {n.key: None for n in nets}
    if backend.artifact_format and todo:
        _start(progress, f"export {backend.artifact_format}", len(todo))
        arts.update(export_networks(todo, backend.artifact_format, jobs=jobs, dtype=backend.dtype,
                                    on_done=(lambda n: progress.advance(n.name)) if progress else None))
        _finish(progress)
    _start(progress, f"measure x{rounds}", len(nets) * rounds)
    res = measure_stored(backend, nets, arts, protocol, rounds=rounds, seed=seed, store=store, config=config,
                         tag=tag, deadline=deadline, watch=watch,
                         on_measured=(lambda n, r: progress.advance(n.name)) if progress else None)
    _finish(progress)
    return res


def _start(p: Progress | None, phase: str, total: int) -> None:
    if p:
        p.start(phase, total)


def _finish(p: Progress | None) -> None:
    if p:
        p.finish()


def compare(lut: LUT, nets: Sequence[NetworkSpec], measured: dict[str, NetMeasurement]) -> list[ModelRow]:
    """Per-model rows: plain sum, the LUT's (calibrated) prediction, measurement, noise, held-out flag."""
    cal = from_header(lut.header, lut.name)
    fitted = set(cal.fitted_on) if cal else set()
    space = space_of(lut)
    rows = []
    for net in nets:
        row = ModelRow(net.name, net.key, " ".join(space.choice_names(net.arch)), net.flops,
                       held_out=net.key not in fitted)
        m = measured.get(net.key)
        try:
            p = predict(lut, net.arch, space)
            row.plain_ms, row.predicted_ms = p.raw_total_ms, p.total_ms
            row.feats = features((lut[s.key].spec, lut[s.key].median) for s in net.specs if not s.is_identity)
        except LatencyLutError as e:
            row.status = f"prediction failed: {e}"
        if m is not None and m.ok:
            row.measured_ms, row.noise, row.rounds = m.median_ms, m.spread, len(m.rounds)
            row.round_ms = m.round_medians
        elif row.status == "ok":
            row.status = f"measurement failed: {m.error if m else 'not measured'}"
        rows.append(row)
    return rows


def summarize(rows: Sequence[ModelRow], **extra: Any) -> dict[str, Any]:
    """Accuracy of the LUT's predictor and of the plain sum on the held-out rows, with the measurement noise."""
    ok = [r for r in rows if r.ok]
    held = [r for r in ok if r.held_out]
    meas = [r.measured_ms for r in held]
    out: dict[str, Any] = {
        "models": len(rows), "measured": len(ok), "failed": [f"{r.label}: {r.status}" for r in rows if not r.ok],
        "held_out": len(held), "excluded_fitted": len(ok) - len(held),
    }
    if len(held) >= 1:
        out["accuracy"] = accuracy([r.predicted_ms for r in held], meas).to_dict()
        out["plain_sum"] = accuracy([r.plain_ms for r in held], meas).to_dict()
    out["noise"] = noise_summary(ok)
    out.update(extra)
    return out


def noise_summary(rows: Sequence[ModelRow]) -> dict[str, float] | None:
    """How far the measurement itself can be trusted, in the same units as the prediction error.

    ``median``/``p90``/``max``: spread of a model's round medians. ``split_tau`` and ``split_rmspe``: Kendall's tau
    and RMS relative difference between the medians of the even and the odd rounds of the same models, i.e. what
    a *perfect* predictor would score against this measurement; a predictor cannot be shown better than that.
    """
    noises = sorted(r.noise for r in rows if r.noise is not None and math.isfinite(r.noise))
    if not noises:
        return None
    out = {"median": statistics.median(noises), "p90": noises[int(0.9 * (len(noises) - 1))], "max": noises[-1]}
    halves = [(statistics.median(r.round_ms[0::2]), statistics.median(r.round_ms[1::2]))
              for r in rows if len(r.round_ms) >= 2]
    if len(halves) >= 2:
        a, b = [h[0] for h in halves], [h[1] for h in halves]
        out["split_tau"] = kendall_tau(a, b)
        out["split_rmspe"] = math.sqrt(statistics.fmean(((x - y) / ((x + y) / 2)) ** 2 for x, y in halves))
    return out


# ---- cross-validation --------------------------------------------------------------------------------------
def folds(n: int, k: int, seed: int = 0) -> list[list[int]]:
    """Indices 0..n-1 split into k disjoint, near-equal, shuffled folds."""
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    k = max(2, min(k, n))
    return [sorted(idx[i::k]) for i in range(k)]


def cross_validate(
    xs: Sequence[Any], ys: Sequence[float], fit_fn: Callable[[list[Any], list[float]], Callable[[Any], float]],
    k: int = 5, seed: int = 0,
) -> list[float]:
    """Held-out predictions: each item predicted by a model fitted on the other folds only."""
    preds = [math.nan] * len(xs)
    for test in folds(len(xs), k, seed):
        tset = set(test)
        train = [i for i in range(len(xs)) if i not in tset]
        assert not tset & set(train)  # the discipline this function exists for
        model = fit_fn([xs[i] for i in train], [ys[i] for i in train])
        for i in test:
            preds[i] = model(xs[i])
    return preds


def fit_calibration(xs: list[dict[str, float]], ys: list[float]) -> Callable[[dict[str, float]], float]:
    return fit(xs, ys).apply


def fit_flops(xs: list[float], ys: list[float]) -> Callable[[float], float]:
    """The FLOPs baseline: latency = a * MACs + b, least squares on relative error."""
    import numpy as np

    x, y = np.asarray(xs, float), np.asarray(ys, float)
    a = np.stack([x / y, 1 / y], axis=1)
    coef = np.linalg.lstsq(a, np.ones_like(y), rcond=None)[0]
    return lambda f: float(coef[0] * f + coef[1])


def calibrate(rows: list[ModelRow], k: int = 5, seed: int = 0) -> tuple[Calibration, dict[str, Any]]:
    """Cross-validated accuracy of the calibration (and of the FLOPs baseline), then the fit on all rows."""
    ok = [r for r in rows if r.ok]
    if len(ok) < max(MIN_MODELS, 3):
        raise ValidationError(f"calibration needs at least 3 measured models, got {len(ok)}; raise --n")
    ys = [float(r.measured_ms) for r in ok]  # type: ignore[arg-type]
    cv = cross_validate([r.feats for r in ok], ys, fit_calibration, k, seed)
    for r, p in zip(ok, cv):
        r.cv_ms = p
    cv_flops = cross_validate([float(r.flops) for r in ok], ys, fit_flops, k, seed)
    cal = fit([r.feats for r in ok], ys, [r.key for r in ok])
    report = {
        "folds": len(folds(len(ok), k, seed)),
        "calibrated_cv": accuracy(cv, ys).to_dict(),
        "flops_fit_cv": accuracy(cv_flops, ys).to_dict(),
        "plain_sum": accuracy([float(r.plain_ms) for r in ok], ys).to_dict(),  # type: ignore[arg-type]
    }
    return cal, report


# ---- one call for the CLI ----------------------------------------------------------------------------------
def run_validation(
    lut: LUT, device: Any, backend: Any, *, n: int = 50, seed: int = 0, rounds: int = 5, jobs: int = 1,
    named: bool = True, store: Any | None = None, progress: Progress | None = None, do_calibrate: bool = False,
    folds_k: int = 5,
) -> ValidationReport:
    if n < MIN_MODELS:
        raise ValidationError(f"--n must be at least {MIN_MODELS} (a rank correlation needs two models), got {n}")
    if rounds < 1:
        raise ValidationError(f"--rounds must be at least 1, got {rounds}")
    check_device(lut, device)
    check_lut_dtype(lut.header, backend.dtype, lut.name)
    if backend.runtime != lut.header.get("runtime"):
        raise ValidationError(f"{lut.name} was measured with {lut.header.get('runtime')}, the backend runs "
                              f"{backend.runtime}; validate with the LUT's runtime")
    space = space_of(lut)
    nets = sample_archs(space, n, seed, named=named)
    # A model the LUT cannot predict (an incomplete LUT) is reported by compare() and not worth measuring.
    predictable = [net for net in nets if not _missing(lut, net)]
    protocol = Protocol.from_dict(lut.header.get("protocol") or {})
    config = config_for(device, backend, protocol, lut.header.get("dtype", "fp32"))
    watch = lut_watch(lut, backend, protocol, store, config) if store is not None else None
    measured = measure_models(lut, device, backend, predictable, rounds=rounds, seed=seed, jobs=jobs, store=store,
                              progress=progress, watch=watch)
    rows = compare(lut, nets, measured)
    settings_hash = config.hash
    extra: dict[str, Any] = {
        # False when the runtime version, threads, exporter or protocol differ from the LUT's build: the models
        # were then not measured the way the LUT was, and the comparison is suspect.
        "settings_match": settings_hash == lut.header.get("settings_hash"),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "tool_version": __version__,
        "seed": seed, "n": n, "rounds": rounds, "named": named,
        "predictor": "calibrated" if from_header(lut.header) else "plain_sum",
        "runtime": backend.runtime, "threads": backend.threads,
    }
    checks = store.drift_checks(config) if watch is not None else []
    # How the machine ran against the LUT's build: the reference's re-timings (these and a resumed run's) over its
    # LUT entry.
    factor = None if watch is None else host_factor(checks, "validate", ref=watch.ref.key,
                                                    baseline_ms=lut[watch.ref.key].median)
    n_obs = len(observations(checks, "validate", watch.ref.key)) if watch else 0
    extra.update(host_factor=factor, host_observations=n_obs)
    cal = None
    if do_calibrate:
        # The fit sees the networks as the machine would have run them while the ops were timed; the report's
        # rows stay as measured.
        fitted = [replace(r, measured_ms=r.measured_ms / factor, round_ms=[x / factor for x in r.round_ms])
                  if factor and r.measured_ms is not None else r for r in rows]
        cal, report = calibrate(fitted, folds_k, seed)
        for r, f in zip(rows, fitted):
            r.cv_ms = None if f.cv_ms is None else f.cv_ms * (factor or 1.0)
        cal = replace(cal, device=device.name, cross_validated=report,
                      source={"by": "validate", "models": len(nets), "rounds": rounds, "seed": seed,
                              "host_factor": factor, "observations": n_obs})
        extra["calibration_fit"] = report
    return ValidationReport(rows, summarize(rows, **extra), cal)


def lut_watch(lut: LUT, backend: Any, protocol: Protocol, store: Any, config: Any) -> Watch | None:
    """A drift watch for measurements taken after the build (``validate``): the LUT's own reference op, re-timed
    between the models, against its LUT entry. Its ratios are the host factor: reported, and the networks of
    ``validate --calibrate`` are fitted divided by it."""
    specs = [e.spec for e in lut.entries.values()]
    ref = reference_op(specs)
    if ref is None or not lut[ref.key].median > 0:
        return None
    art = None
    if backend.artifact_format:
        art = export_many([ref], backend.artifact_format, dtype=backend.dtype)[ref.key]
    session = store.start_session(config, backend.device_info(), __version__)
    return Watch(DriftGuard(), backend, ref, art, protocol, store, session, baseline_ms=lut[ref.key].median)


# ---- the calibration pass at the end of a build ------------------------------------------------------------
# The build's networks come from their own seed, which no validation uses by default, so a plain validate after a
# plain build scores the calibration on models it never saw.
CALIBRATION_SEED = 7_000_001
MAX_CALIBRATION_NOISE = 0.15  # median spread of a network's round medians above which no calibration is fitted


@dataclass
class CalibrationPass:
    calibration: Calibration | None  # None when too few models could be measured
    models: int
    reused: int  # models whose every round was already in the store
    seconds: float
    budget_seconds: float
    report: dict[str, Any] = field(default_factory=dict)
    rows: list[ModelRow] = field(default_factory=list)


def calibration_pass(
    lut: LUT, device: Any, backend: Any, store: Any, *, budget_s: float, max_models: int = 40, rounds: int = 3,
    seed: int = CALIBRATION_SEED, jobs: int = 1, folds_k: int = 5, progress: Progress | None = None,
    cost_ratio: float = 1.0, max_noise: float = MAX_CALIBRATION_NOISE,
    measure: Callable[..., dict[str, NetMeasurement]] | None = None, watch: Any = None,
) -> CalibrationPass:
    """A short whole-network pass: the space's named architectures plus sampled ones, measured in interleaved
    rounds (each round stored as taken), then the calibration fitted on them, with its k-fold cross-validated
    accuracy, into the LUT's header.

    The models are added in a fixed order (named first, then the seeded sample, at most ``max_models`` of them)
    while the estimated cost of exporting and measuring them stays within ``budget_s``: a model's measurement is
    estimated from its predicted latency and the protocol, times ``cost_ratio`` (the build's wall time per second
    the protocol accounted for: session creation, a busy host), an export from the exports already timed. Rounds
    after the first stop early when the next one would end past the budget. Models the
    store already holds in full cost nothing, so a rerun picks the same models and measures nothing.

    ``measure`` replaces :func:`measure_models` (same keywords, minus the device): a farm shards the models'
    rounds over the phones of the LUT's model. Its budget and cost ratio are then in device-seconds.

    ``watch`` is the build's drift guard (``BuildResult.watch``): the reference op is re-timed between the
    networks and compared with the ops' baseline. The median of those ratios, the ``host_factor``, is how much
    slower the machine ran the pass than the ops, and the networks are fitted divided by it: otherwise a
    neighbour's load during the pass alone ends up in the calibration as a difference between ops and networks
    (two cold builds' FBNet-A/B/C predictions came out 6-13% apart while their plain sums agreed within 1.1%).
    """
    import time

    from latency_lut.export import artifact_path

    t0 = time.perf_counter()
    space = space_of(lut)
    protocol = Protocol.from_dict(lut.header.get("protocol") or {})
    config = config_for(device, backend, protocol, lut.header.get("dtype", "fp32"))
    nets = sample_archs(space, max_models, seed, named=True)
    named = [n for n in nets if n.arch.name != "custom"]
    ordered = [n for n in named + [n for n in nets if n.arch.name == "custom"] if not _missing(lut, n)]
    have = store.round_records(config, [n.key for n in ordered])
    tag = f"calibration-{seed}"
    # A finished pass is taken again as it was (whatever the budget now), so a rerun measures nothing.
    before = [n for n in ordered if any(rec.extra.get("by") == tag for rec in have.get(n.key, {}).values())]
    if before and all(len(have[n.key]) >= rounds for n in before):
        ordered = before
    fmt = backend.artifact_format
    chosen: list[NetworkSpec] = []
    spent, exports = 0.0, []  # estimated seconds of what was chosen; timed exports
    _start(progress, "calibration models", len(ordered))
    for net in ordered:
        if progress:
            progress.advance(net.name)
        left = rounds - len([r for r in have.get(net.key, {}) if r < rounds])
        if left:
            cost = left * protocol_seconds(predict(lut, net.arch, space).raw_total_ms, protocol) * cost_ratio
            cached = not fmt or artifact_path(net, fmt, dtype=backend.dtype).exists()  # type: ignore[arg-type]
            # Exports after the first one run in measure_models' pool of ``jobs`` processes: an int8 network's
            # quantization costs seconds (LiteRT: ~20 s), and exported one by one they crowded out the models.
            export_s = 0.0 if cached else statistics.fmean(exports) / max(1, jobs) if exports else 0.0
            if spent + cost + export_s > budget_s:
                continue  # a smaller model further down may still fit
            if not cached and not exports:  # the first export is timed here: it prices the others
                te = time.perf_counter()
                export_networks([net], fmt, dtype=backend.dtype)  # type: ignore[arg-type]
                exports.append(time.perf_counter() - te)
                export_s = exports[-1]
            spent += cost + export_s
        chosen.append(net)
    _finish(progress)
    measured = (measure or partial(measure_models, lut, device, backend, watch=watch))(
        chosen, rounds=rounds, seed=seed, jobs=jobs, store=store, progress=progress, tag=tag, deadline=t0 + budget_s)
    reused = sum(len(have.get(n.key, {})) >= rounds for n in chosen)
    checks = store.drift_checks(config)
    factor = host_factor(checks, tag)
    cal, report, rows = fit_into_header(lut, device.name, chosen, measured, folds_k, seed,
                                        {"by": "build", "named": len(named), "rounds": rounds, "seed": seed,
                                         "host_factor": factor, "observations": len(observations(checks, tag))},
                                        max_noise=max_noise, host_factor=factor)
    took = sum(bool(m.ok) for m in measured.values())  # the deadline may have cut the first round short
    return CalibrationPass(cal, took, reused, time.perf_counter() - t0, budget_s, report, rows)


def fit_into_header(
    lut: LUT, device_name: str, nets: Sequence[NetworkSpec], measured: dict[str, NetMeasurement], folds_k: int,
    seed: int, source: dict[str, Any], max_noise: float = MAX_CALIBRATION_NOISE, host_factor: float | None = None,
) -> tuple[Calibration | None, dict[str, Any], list[ModelRow]]:
    """Fit the calibration on measured whole networks (k-fold cross-validated summary included) and put it into
    the LUT's header. None (and the header untouched) with fewer than 3 measured models, or when the networks'
    rounds disagree by a median of more than ``max_noise`` (``report["refused"]`` says so): a fit on
    a host that was that busy would move predictions further than the plain sum is off. With a ``host_factor``
    (see :func:`calibration_pass`) the networks' times are divided by it first; the rows returned are too."""
    rows = compare(lut, nets, measured)
    if host_factor:
        for r in rows:
            if r.measured_ms is not None:
                r.measured_ms /= host_factor
                r.round_ms = [x / host_factor for x in r.round_ms]
    ok = [r for r in rows if r.ok]
    if len(ok) < 3:
        return None, {}, rows
    noise = noise_summary(ok)
    if noise and noise["median"] > max_noise:
        return None, {"refused": f"the networks' rounds disagree by a median {100 * noise['median']:.0f}% (over "
                                 f"{100 * max_noise:.0f}%): the host was too busy", "noise": noise}, rows
    cal, report = calibrate(rows, folds_k, seed)
    report["noise"] = noise
    cal = replace(cal, device=device_name, cross_validated=report, source={**source, "models": len(ok)})
    lut.header["calibration"] = cal.to_dict()
    return cal, report, rows


def _missing(lut: LUT, net: NetworkSpec) -> bool:
    return any(not s.is_identity and s.key not in lut for s in net.specs)


def record(lut: LUT, report: ValidationReport) -> None:
    """Put the summary (and a new calibration) into the LUT header; the caller saves the file."""
    lut.header["validation"] = report.summary
    if report.calibration is not None:
        lut.header["calibration"] = report.calibration.to_dict()


# ---- outputs -----------------------------------------------------------------------------------------------
CSV_COLUMNS = ("label", "key", "choices", "flops", "plain_ms", "predicted_ms", "measured_ms", "error",
               "plain_error", "cv_ms", "cv_error", "noise", "rounds", "round_ms", "held_out", "status")


def write_csv(rows: Sequence[ModelRow], path: str | Path) -> Path:
    path = check_output_path(path)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r.to_dict(), "round_ms": ";".join(f"{x:.5f}" for x in r.round_ms)})
    return path


def write_plot(rows: Sequence[ModelRow], path: str | Path, title: str = "") -> Path:
    """Scatter of predicted against measured latency with the y = x line and the +-10% band (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = check_output_path(path)
    ok = [r for r in rows if r.ok]
    if not ok:
        raise LUTFormatError("nothing to plot: no model was measured")
    lo = 0.9 * min(min(r.measured_ms, r.predicted_ms, r.plain_ms) for r in ok)  # type: ignore[type-var]
    hi = 1.1 * max(max(r.measured_ms, r.predicted_ms, r.plain_ms) for r in ok)  # type: ignore[type-var]
    fig, ax = plt.subplots(figsize=(5.5, 5.5), dpi=120)
    xs = [lo, hi]
    ax.fill_between(xs, [0.9 * x for x in xs], [1.1 * x for x in xs], color="tab:green", alpha=0.15,
                    label="+-10%")
    ax.plot(xs, xs, color="tab:green", lw=1)
    calibrated = any(r.predicted_ms != r.plain_ms for r in ok)
    if calibrated:
        ax.scatter([r.measured_ms for r in ok], [r.plain_ms for r in ok], s=12, c="tab:gray", alpha=0.6,
                   label="plain sum")
    held = [r for r in ok if r.held_out]
    fitted = [r for r in ok if not r.held_out]
    ax.scatter([r.measured_ms for r in held], [r.predicted_ms for r in held], s=16, c="tab:blue",
               label="prediction (held out)" if calibrated else "prediction")
    if fitted:
        ax.scatter([r.measured_ms for r in fitted], [r.predicted_ms for r in fitted], s=16, c="tab:orange",
                   marker="x", label="prediction (fitting set)")
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="measured latency (ms)", ylabel="predicted latency (ms)",
           title=title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def default_output(lut: LUT, suffix: str) -> Path:
    base = lut.path or Path(f"{lut.header.get('device')}-{lut.header.get('runtime')}.json")
    return base.with_name(f"{base.stem}-validation{suffix}")


__all__ = ["CalibrationPass", "ModelRow", "ValidationError", "ValidationReport", "calibrate", "calibration_pass",
           "check_device", "compare", "cross_validate", "fit_into_header", "folds", "measure_models",
           "read_model_list", "record", "run_validation", "stored_rounds", "summarize", "validate_models",
           "write_csv", "write_plot"]


# ---- any models (torch modules, ONNX files) ------------------------------------------------------------------
def validate_models(
    lut: LUT, device: Any, backend: Any, units: Sequence[Any], *, rounds: int = 5, seed: int = 0,
    store: Any | None = None, store_path: str | Path | None = None, measure_missing: bool = False,
    progress: Progress | None = None,
) -> ValidationReport:
    """Predicted (plain and calibrated) against measured for any models (``models.ModelUnit``), in the report
    form of :func:`run_validation`. With ``measure_missing`` the units a prediction lacks are measured first.
    Each round goes into ``store`` as it is taken and stored rounds are reused, as in :func:`measure_models`."""
    from latency_lut.models import export_units, measure_units
    from latency_lut.ops import OpSpec
    from latency_lut.predict import predict_module, predict_onnx

    check_device(lut, device)
    if rounds < 1:
        raise ValidationError(f"--rounds must be at least 1, got {rounds}")
    cal = from_header(lut.header, lut.name)
    fitted = set(cal.fitted_on) if cal else set()
    protocol = Protocol.from_dict(lut.header.get("protocol") or {})
    measure = measurer(store_path) if measure_missing else None
    rows: list[ModelRow] = []
    _start(progress, "predict", len(units))
    for u in units:
        row = ModelRow(u.name, "", "", 0)
        try:
            if u.module is not None:
                p = predict_module(lut, u.module, u.input_shape, measure=measure, name=u.name)
            else:
                p = predict_onnx(lut, u.onnx, measure=measure)
            row.plain_ms, row.predicted_ms, row.flops = p.raw_total_ms, p.total_ms, p.flops
            row.choices = f"{len(p.ops)} units, {sum(bool(o.note) for o in p.ops)} from primitives"
            row.feats = features((OpSpec.from_key(o.key), o.ms) for o in p.ops)
        except LatencyLutError as e:
            row.status = f"prediction failed: {e}"
        rows.append(row)
        if progress:
            progress.advance(u.name)
    _finish(progress)
    _start(progress, f"export {backend.artifact_format or 'onnx'}", len(units))
    arts = export_units(units, backend.artifact_format, on_done=(lambda u: progress.advance(u.name)) if progress
                        else None)
    _finish(progress)
    config = config_for(device, backend, protocol, lut.header.get("dtype", "fp32"))
    # The LUT's reference re-timed between the models says how the machine compares with the one the LUT saw.
    watch = lut_watch(lut, backend, protocol, store, config) if store is not None else None
    _start(progress, f"measure x{rounds}", len(units) * rounds)
    res = measure_units(backend, units, arts, protocol, rounds=rounds, seed=seed, store=store, config=config,
                        tag="validate", on_measured=(lambda u, r: progress.advance(u.name)) if progress else None,
                        watch=watch)
    _finish(progress)
    for u, row in zip(units, rows):
        row.key = u.key
        row.held_out = u.key not in fitted
        m = res.get(u.key)
        if m is not None and m.ok:
            row.measured_ms, row.noise, row.rounds, row.round_ms = m.median_ms, m.spread, len(m.rounds), \
                m.round_medians
        elif row.status == "ok":
            row.status = f"measurement failed: {m.error if m else 'not measured'}"
    extra: dict[str, Any] = {
        "settings_match": config.hash == lut.header.get("settings_hash"),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "tool_version": __version__,
        "seed": seed, "rounds": rounds, "models_given": [u.name for u in units],
        "predictor": "calibrated" if cal else "plain_sum", "runtime": backend.runtime, "threads": backend.threads,
        # the median of the reference's re-timings over its LUT entry during this run's measurements (1.0: the
        # machine as the LUT's ops saw it; None: nothing measured, or too few re-timings to say)
        "host_factor": statistics.median(watch.observed) if watch and len(watch.observed) >= 3 else None,
        "host_observations": len(watch.observed) if watch else 0,
    }
    return ValidationReport(rows, _finite(summarize(rows, **extra)))


def _finite(obj: Any) -> Any:
    """The summary with NaN/inf (e.g. a rank correlation of one model) as None, so the LUT stays strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def read_model_list(path: str | Path) -> list[tuple[str, tuple[int, ...] | None, int]]:
    """``(target, input shape or None, line number)`` of each model of a ``--models`` file.

    One model per line: ``pkg.mod:factory``, ``path/to/file.py:factory`` or ``path/to/model.onnx``, optionally
    followed by an input shape ``1,3,224,224``; ``#`` starts a comment. Relative paths are relative to the file.
    """
    p = Path(path)
    text = read_input(p, "--models file", hint="give the path of a text file listing models", missing="",
                      error=ValidationError)
    out: list[tuple[str, tuple[int, ...] | None, int]] = []
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        where = f"{p} line {no}"
        if len(parts) > 2:
            raise ValidationError(f"{where}: expected 'TARGET [N,C,H,W]', got {len(parts)} fields: {line!r}")
        target = parts[0]
        if not (target.endswith(".onnx") or (":" in target and target.rpartition(":")[2])):
            raise ValidationError(f"{where}: {target!r} is neither pkg.mod:factory, file.py:factory nor a .onnx "
                                  "file")
        shape = None
        if len(parts) == 2:
            try:
                shape = tuple(int(v) for v in parts[1].split(","))
            except ValueError:
                shape = ()
            if len(shape) != 4 or shape[0] != 1 or min(shape) < 1:
                raise ValidationError(f"{where}: input shape {parts[1]!r} is not N,C,H,W with N = 1")
        path_part = target if target.endswith(".onnx") else target.rpartition(":")[0]
        if (path_part.endswith((".py", ".onnx"))) and not Path(path_part).is_absolute():
            resolved = p.parent / path_part
            target = str(resolved) + ("" if target.endswith(".onnx") else ":" + target.rpartition(":")[2])
        if target.endswith(".onnx") and not Path(target).is_file():
            raise ValidationError(f"{where}: ONNX file {target} does not exist")
        out.append((target, shape, no))
    if not out:
        raise ValidationError(f"--models file {p} lists no models")
    return out
