"""The measurement protocol: how long to run, which statistics to keep, and the noise gate.

A backend produces raw per-run samples (milliseconds). The gate takes repeated attempts while an op's spread is
above the threshold and flags the op when every attempt was noisy; the least noisy attempt is the one a LUT uses,
and every attempt is kept in the store.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

CLOCKS = ("wall", "thread_cpu")
# A normal distribution's interquartile range spans 1.349 standard deviations.
_IQR_SIGMAS = 1.3489795003921634
# Standard normal quantiles: z(0.95), z(0.90), z(0.75).
_Z05, _Z10, _Z25 = 1.6448536269514722, 1.2815515655446004, 0.6744897501960817


# The plausibility rule every reader of measured values applies (the LUT loader, ingest of phone results, the
# device backends): a latency is a finite number of milliseconds, >= 0 and at most MAX_PLAUSIBLE_MS. One
# inference of one model taking over 10 minutes is no latency a LUT can use; it is a unit mix-up (ns read as us),
# a corrupt file or a hand edit, and summing it would overflow a prediction to Infinity.
MAX_PLAUSIBLE_MS = 600_000.0


def implausible_ms(value: object) -> str | None:
    """Why ``value`` is not a plausible latency in ms (to follow "X is VALUE: "), or None when it is."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "not a number"
    if not math.isfinite(value):
        return "not a finite number"
    if value < 0:
        return "latencies are non-negative"
    if value > MAX_PLAUSIBLE_MS:
        return (f"over {MAX_PLAUSIBLE_MS:.0f} ms (10 minutes) for one run, no plausible latency; check the unit "
                "(us vs ms) or re-measure")
    return None


def check_plausible_stats(stats: Stats, where: str, error: type[Exception] = ValueError) -> Stats:
    """Raise ``error`` naming ``where`` and the field when any latency of ``stats`` is implausible."""
    for f in ("median", "p10", "p25", "p75", "p90", "mean", "min", "max", "std"):
        v = getattr(stats, f)
        why = implausible_ms(v)
        if why:
            raise error(f"{where}: {f} is {v:.6g} ms: {why}")
    return stats


@dataclass(frozen=True)
class Protocol:
    """How one op is measured. Every field is recorded in the store and in the LUT header."""

    warmup: int = 5
    runs: int = 30
    min_seconds: float = 0.1
    max_runs: int = 2000
    max_seconds: float = 5.0
    noise_threshold: float = 0.10
    retries: int = 2
    cooldown_seconds: float = 0.0
    # "wall": elapsed time of each call (what a user waits). "thread_cpu": CPU time of the calling thread, which a
    # busy shared host cannot inflate by preempting the benchmark; equal to wall time on an idle machine for a
    # single-threaded in-process runtime (ONNX Runtime and LiteRT run 1-thread inference on the caller's thread).
    # Only meaningful for local backends at 1 thread.
    clock: str = "wall"

    def __post_init__(self) -> None:
        if self.runs < 3:
            raise ValueError("protocol runs must be at least 3")
        if self.warmup < 0 or self.min_seconds < 0 or self.retries < 0:
            raise ValueError("protocol warmup, min_seconds and retries must be non-negative")
        for name in ("min_seconds", "max_seconds", "noise_threshold", "cooldown_seconds"):
            v = getattr(self, name)  # NaN would pass every comparison above and poison the store's settings
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"protocol {name} must be a finite number >= 0, got {v!r}")
        if self.clock not in CLOCKS:
            raise ValueError(f"protocol clock must be one of {', '.join(CLOCKS)}, got {self.clock!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["clock"] == "wall":
            del d["clock"]  # the default is left out, so settings hashes of wall-clock builds never change
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Protocol:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Stats:
    """Summary of one attempt's samples, in milliseconds. ``noise`` is the gate's robust spread."""

    count: int
    median: float
    p10: float
    p25: float
    p75: float
    p90: float
    mean: float
    std: float
    cv: float
    min: float
    max: float

    @property
    def noise(self) -> float:
        """Robust coefficient of variation: the interquartile range scaled to one sigma, over the median.

        Unlike std/mean (or a p10-p90 spread) it is not inflated by the long right tail that preempted runs give
        on a shared machine, yet it grows when the bulk of the runs is spread out or bimodal.
        """
        return (self.p75 - self.p25) / _IQR_SIGMAS / self.median if self.median > 0 else math.inf

    def to_dict(self) -> dict[str, float]:
        d = asdict(self)
        d["noise"] = self.noise
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Stats:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def percentile(sorted_xs: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default) of already sorted data, q in [0, 100]."""
    if not sorted_xs:
        raise ValueError("no samples")
    pos = (len(sorted_xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def compute_stats(samples_ms: Sequence[float]) -> Stats:
    xs = sorted(float(x) for x in samples_ms)
    if not xs:
        raise ValueError("cannot summarize an empty sample list")
    mean = statistics.fmean(xs)
    # statistics.stdev is exact (fractions) and took most of a warm build's time on thousands of samples
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return Stats(
        count=len(xs), median=percentile(xs, 50), p10=percentile(xs, 10), p25=percentile(xs, 25),
        p75=percentile(xs, 75), p90=percentile(xs, 90),
        mean=mean, std=std, cv=std / mean if mean > 0 else math.inf, min=xs[0], max=xs[-1],
    )


def stats_from_aggregates(
    count: int, mean: float, std: float, lo: float, hi: float, median: float | None = None,
    p5: float | None = None, p95: float | None = None, all_same: bool = False,
) -> tuple[Stats, str]:
    """Stats (ms) from the aggregates a benchmark tool prints (TFLite's benchmark_model on a phone or in the iOS
    app), and a note on how the percentiles were obtained, for the store.

    Such tools print count, mean, std, min and max (newer builds also p5, median, p95) but no per-run times. The
    quartiles and p10/p90 are then estimated: from a normal distribution fitted separately to each side of the
    printed median (through p5 and p95) when the tool prints them, otherwise from mean and std, always clipped to
    the printed min and max. Without a printed median, the median is the mean.
    """
    if count < 1:
        raise ValueError("aggregates of zero runs")
    center = mean if median is None else median
    if median is not None and p5 is not None and p95 is not None:
        s_lo, s_hi = max(median - p5, 0.0) / _Z05, max(p95 - median, 0.0) / _Z05
        how = "p10/p25/p75/p90 interpolated (normal per side) from the printed p5/median/p95"
    elif all_same or count == 1:
        s_lo = s_hi = 0.0
        how = "every run took the same time" if count > 1 else "a single run"
    else:
        s_lo = s_hi = std
        how = ("median = mean; p10/p25/p75/p90 from a normal fit to mean/std" if median is None
               else "p10/p25/p75/p90 from a normal fit to mean/std around the printed median")

    def clip(x: float) -> float:
        return min(max(x, lo), hi)

    center = clip(center)
    stats = Stats(
        count=int(count), median=center,
        p10=clip(center - _Z10 * s_lo), p25=clip(center - _Z25 * s_lo),
        p75=clip(center + _Z25 * s_hi), p90=clip(center + _Z10 * s_hi),
        mean=mean, std=std, cv=std / mean if mean > 0 else math.inf, min=lo, max=hi,
    )
    return stats, how


@dataclass
class RunResult:
    """What a backend returns for one attempt.

    ``samples_ms`` are the raw per-run times. Tools that report only aggregates (a phone's benchmark_model)
    leave it empty and fill ``stats`` instead. ``extra`` holds anything else worth keeping (temperatures, a
    per-node profile).
    """

    samples_ms: list[float]
    stats: Stats | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> Stats:
        return self.stats if self.stats is not None else compute_stats(self.samples_ms)


def time_callable(fn: Callable[[], object], protocol: Protocol) -> list[float]:
    """Call ``fn`` warmup times, then until both ``runs`` and ``min_seconds`` are reached, or a cap is: ``max_runs``,
    or ``max_seconds`` of timed runs (which stops a slow op short of ``runs``, after 3 runs at least).

    Returns the per-call wall times in milliseconds.
    """
    for _ in range(protocol.warmup):
        fn()
    samples: list[float] = []
    wall = time.perf_counter_ns
    clock = time.thread_time_ns if protocol.clock == "thread_cpu" else wall
    start = wall()
    min_ns, max_ns = protocol.min_seconds * 1e9, protocol.max_seconds * 1e9
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        samples.append((t1 - t0) / 1e6)
        n, elapsed = len(samples), wall() - start  # the run budget is always wall time
        # max_seconds caps a slow op even before it reaches ``runs`` (3 runs at least, so it has a spread).
        if n >= protocol.max_runs or (n >= protocol.runs and elapsed >= min_ns) or (n >= 3 and elapsed >= max_ns):
            return samples


def protocol_seconds(ms: float, protocol: Protocol) -> float:
    """About how long one attempt of a unit taking ``ms`` per run lasts under ``protocol`` (for time budgets)."""
    t = max(float(ms), 1e-6) / 1e3
    timed = min(max(protocol.runs * t, protocol.min_seconds), max(protocol.max_seconds, 3 * t),
                protocol.max_runs * t)
    return protocol.warmup * t + timed


@dataclass
class GatedResult:
    """All attempts at one op; ``best`` is the least noisy, ``flagged`` when even that one is over the gate."""

    attempts: list[RunResult]
    best_index: int
    flagged: bool

    @property
    def best(self) -> RunResult:
        return self.attempts[self.best_index]


def measure_gated(attempt: Callable[[], RunResult], protocol: Protocol) -> GatedResult:
    """Run ``attempt`` until its noise is under the threshold or the retries are used up."""
    attempts: list[RunResult] = []
    for i in range(protocol.retries + 1):
        if i and protocol.cooldown_seconds:
            time.sleep(protocol.cooldown_seconds)
        attempts.append(attempt())
        if attempts[-1].summary().noise <= protocol.noise_threshold:
            break
    best = min(range(len(attempts)), key=lambda j: attempts[j].summary().noise)
    return GatedResult(attempts, best, attempts[best].summary().noise > protocol.noise_threshold)
