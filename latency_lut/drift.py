"""The drift guard: a fixed reference op re-timed while a build measures, to catch a machine that changed under it.

``DriftGuard`` holds the settings, ``DriftMonitor`` the decisions (pure: no timing, no I/O), and ``Watch`` does
the work on one device: it times the reference, records each check in the store and waits out a drift. A build
watches its ops with it; the calibration pass after it only observes the reference between its whole networks,
against the ops' baseline, to put the networks back on the machine state the ops were timed in
(``host_factor``).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from latency_lut.measure import Protocol, RunResult

# The checks the band's scatter is taken over: about a third of a 224 build's checks, so a host that turns busy
# widens it within a few blocks.
SCATTER_WINDOW = 12


@dataclass(frozen=True)
class DriftGuard:
    """How a build watches the machine it measures on.

    A fixed reference op is re-timed after every ``every`` ops. When its median moves out of the band (at most
    ``threshold``, relative, from the baseline; narrower on a quiet host, see ``min_threshold``), or when its
    recorded temperature (``temperature_c`` in a backend's extra, as the Android backend reports it) rose more
    than ``temp_rise_c`` above the coolest good check, the ops timed since the last good check are measured again,
    later in the round (each op at most ``max_remeasure`` times; then its last measurement is kept). Before
    measuring on, the build waits for the reference to come back, re-timing it every ``wait_seconds`` for at most
    ``max_wait_seconds`` (a neighbour's burst of load, a phone cooling down); all the waits of one build together
    take at most ``max_wait_share`` of its time (or ``max_wait_seconds``, whichever is more), then it re-takes
    without waiting, so a host that stays noisy costs a bounded share and not a wait per block. A change that
    outlasts one whole wait is the machine's new state: the baseline is re-based there (the check says so), so a
    lasting load costs one wait, not one per block of ops.
    """

    every: int = 16
    # The reference is the heaviest op, whose median a neighbour's load moves most: on this project's shared
    # 2-core host it scattered by a median 16% (MAD) from check to check with no hog of ours, while a hog on its
    # core moved it by 30-140% (README, "Reproducibility"); 20% (held for two re-timings) tells them apart.
    threshold: float = 0.20
    # On a quiet host the reference scatters by 2-3% from check to check, and a neighbour's burst that slowed every
    # op by 10-20% for 10-20 s, on either clock (it contends for the caches, not the core), went under 20% and
    # carried the p90 of two cold builds' differences to 10% (README, "Reproducibility"). So the band tightens to
    # ``scatter_k`` times the reference's own scatter (the median absolute deviation of the last checks, once
    # there are ``min_checks``), down to ``min_threshold``; a busy host's scatter keeps it at ``threshold``.
    min_threshold: float = 0.08
    scatter_k: float = 4.0
    min_checks: int = 5
    temp_rise_c: float = 5.0
    max_remeasure: int = 2
    wait_seconds: float = 0.5
    max_wait_seconds: float = 60.0
    max_wait_share: float = 0.25

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"drift guard every must be a whole number of ops >= 1, got {self.every!r}")
        for name in ("threshold", "min_threshold", "scatter_k", "temp_rise_c", "wait_seconds", "max_wait_seconds",
                     "max_wait_share"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"drift guard {name} must be a positive number, got {v!r}")
        if isinstance(self.min_checks, bool) or not isinstance(self.min_checks, int) or self.min_checks < 1:
            raise ValueError(f"drift guard min_checks must be a whole number >= 1, got {self.min_checks!r}")
        if self.max_remeasure < 0:
            raise ValueError(f"drift guard max_remeasure must be >= 0, got {self.max_remeasure}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DriftCheck:
    """One re-timing of the reference op against the baseline."""

    median_ms: float
    baseline_ms: float
    temperature_c: float | None
    baseline_temperature_c: float | None
    drifted: bool
    reason: str = ""
    rebased: bool = False  # the drift outlasted the longest wait: the baseline starts again from this check
    hot: bool = False  # the temperature rose past the allowed rise (a reading, not a timing: needs no confirming)
    threshold: float | None = None  # the band this check was judged with

    @property
    def ratio(self) -> float:
        return self.median_ms / self.baseline_ms if self.baseline_ms > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


class DriftMonitor:
    """The baseline of the reference op and the decision for each new check (pure: no timing, no I/O).

    The baseline is the median of the scheduled checks so far, drifted ones included: the machine's typical state
    during this build, so a steady background load (a shared host) is no drift, while a step away from it is; a
    short burst is one check among many and leaves the baseline where it was. Checks re-taken while a build waits
    for the reference to come back sample that one event again and are not counted (``scheduled=False``).
    A reference that became *faster* by more than the threshold also counts as drift (the ops before it were timed
    in a slower state), and the baseline restarts from it, so a build that started under load recovers instead of
    rejecting everything after the load ends.
    """

    def __init__(self, guard: DriftGuard, baseline_ms: float | None = None) -> None:
        self.guard = guard
        # A given baseline (the reference's LUT entry, for a pass run after its build) stands for the first check.
        self._seen: list[float] = [baseline_ms] if baseline_ms else []
        self._cool: float | None = None
        self._dev: list[float] = []  # |check / baseline - 1| of every check, drifted and waiting ones too

    @property
    def threshold(self) -> float:
        """The band a check is judged with now. The drifted checks and the re-timings while waiting count in the
        scatter too, and only the last ``SCATTER_WINDOW`` of them: otherwise a host that turned noisy would drift
        at every check and wait out every block, held to the quiet band it started in (a build on a host whose
        reference scattered by 10-100% for two minutes took 210 s instead of 60 with 39 drifts)."""
        g = self.guard
        if len(self._dev) < g.min_checks:
            return g.threshold
        return min(g.threshold, max(g.min_threshold, g.scatter_k * statistics.median(self._dev[-SCATTER_WINDOW:])))

    @property
    def baseline_ms(self) -> float | None:
        return statistics.median(self._seen) if self._seen else None

    def judge(self, result: RunResult) -> DriftCheck:
        """The decision on one re-timing, without taking it into the baseline."""
        med = result.summary().median
        temp = result.extra.get("temperature_c")
        temp = float(temp) if isinstance(temp, (int, float)) and math.isfinite(temp) else None
        base, cool = self.baseline_ms, self._cool
        if base is None:  # the first check sets the baseline
            return DriftCheck(med, med, temp, temp, False, "baseline")
        band = self.threshold
        up, hot = med > base * (1 + band), (
            temp is not None and cool is not None and temp > cool + self.guard.temp_rise_c)
        down = med < base / (1 + band)
        reason = ", ".join(r for r, on in ((f"reference {100 * (med / base - 1):+.0f}%", up or down),
                                           (f"temperature +{(temp or 0) - (cool or 0):.1f} C", hot)) if on)
        return DriftCheck(med, base, temp, cool, bool(up or down or hot), reason, hot=bool(hot), threshold=band)

    def check(self, result: RunResult, rebase: bool = False, scheduled: bool = True) -> DriftCheck:
        """Judge one re-timing of the reference and take it into the baseline; with ``rebase`` (the longest wait
        is over), a drifted check becomes the new baseline instead of being compared against the old one again
        and again."""
        c = self.judge(result)
        med, temp, hot = c.median_ms, c.temperature_c, c.hot
        if self._seen and c.baseline_ms > 0:  # waiting checks too: they sample the same host
            self._dev.append(abs(med / c.baseline_ms - 1))
        if not self._seen:
            self._seen, self._cool = [med], temp
        elif c.drifted and rebase:
            self._seen, self._cool = [med], temp
            c = replace(c, reason=f"{c.reason}; not back after {self.guard.max_wait_seconds:g} s: re-based here",
                        rebased=True)
        elif c.drifted and med < c.baseline_ms and not hot:
            self._seen = [med]  # the old baseline was taken in a slower state
        elif scheduled:
            self._seen.append(med)
        if temp is not None and not hot:
            self._cool = temp if self._cool is None else min(self._cool, temp)
        return c


class Watch:
    """The drift guard at work on one device and one store session (see the module docstring).

    ``counts`` adds up its checks, drifts and re-bases; callers add what they re-took to ``counts["remeasured"]``.
    """

    def __init__(self, guard: DriftGuard, backend: Any, ref: Any, artifact: Any, protocol: Protocol, store: Any,
                 session: int, baseline_ms: float | None = None) -> None:
        self.guard, self.backend, self.ref, self.artifact = guard, backend, ref, artifact
        self.protocol, self.store, self.session = protocol, store, session
        self.monitor = DriftMonitor(guard, baseline_ms)
        self.counts = {"checks": 0, "drifts": 0, "remeasured": 0, "rebased": 0}
        self.started, self.waited = time.perf_counter(), 0.0
        self.observed: list[float] = []  # the ratios of this watch's observations, in order

    def check(self, r: int, waiting: bool = False, rebase: bool = False) -> bool:
        """Re-time the reference; True when it drifted.

        A scheduled check whose time looks drifted is re-timed at once, and only a drift that holds counts: one
        slow re-timing on a busy host is no reason to re-take a block (a temperature rise is a reading, and counts
        at once). While ``waiting`` for the reference to come back, one good re-timing is enough."""
        res = self.backend.measure(self.ref, self.artifact, self.protocol)
        if not waiting and (first := self.monitor.judge(res)).drifted and not first.hot:
            self.store.add_check(self.session, self.ref.key, res, {
                **first.to_dict(), "drifted": False, "round": r, "reason": f"{first.reason}: re-timed to confirm"})
            self.counts["checks"] += 1
            res = self.backend.measure(self.ref, self.artifact, self.protocol)
        c = self.monitor.check(res, rebase=rebase, scheduled=not waiting)
        self.store.add_check(self.session, self.ref.key, res, {**c.to_dict(), "round": r})
        self.counts["checks"] += 1
        self.counts["drifts"] += c.drifted
        self.counts["rebased"] += c.rebased
        return c.drifted

    def observe(self, r: int, by: str) -> float:
        """Re-time the reference between measurements of another kind (whole networks), and record it, tagged
        ``by``, as an observation: it leaves the baseline and the band alone and makes nobody wait. Returns the
        reference's time against the baseline (1.0: the machine as the ops saw it)."""
        res = self.backend.measure(self.ref, self.artifact, self.protocol)
        c = self.monitor.judge(res)
        self.store.add_check(self.session, self.ref.key, res, {**c.to_dict(), "round": r, "drifted": False,
                                                               "observed": True, "by": by,
                                                               "ref": self.ref.key})
        self.counts["checks"] += 1
        self.observed.append(c.ratio)
        return c.ratio

    def block_drifted(self, r: int) -> bool:
        """The check after a block of measurements: True when the block must be re-taken. After a drift it returns
        only once the reference is back in two re-timings in a row (a load that comes and goes, as a
        memory-streaming neighbour's does, lets one through), or re-based after the longest wait."""
        if not self.check(r):
            return False
        g, waited, back = self.guard, 0.0, 0
        while waited < g.max_wait_seconds and back < 2 and self.waited < max(
                g.max_wait_seconds, g.max_wait_share * (time.perf_counter() - self.started)):
            time.sleep(g.wait_seconds)
            waited += g.wait_seconds
            self.waited += g.wait_seconds
            back = 0 if self.check(r, waiting=True, rebase=waited >= g.max_wait_seconds) else back + 1
        return True


def observations(checks: list[dict[str, Any]], by: str, ref: str | None = None) -> list[dict[str, Any]]:
    """The checks that were observations of a pass tagged ``by`` (see :meth:`Watch.observe`), of reference op
    ``ref`` only when given."""
    return [c for c in checks if c.get("observed") and c.get("by") == by and (ref is None or c.get("ref") == ref)]


def host_factor(checks: list[dict[str, Any]], by: str, min_checks: int = 3, *, ref: str | None = None,
                baseline_ms: float | None = None) -> float | None:
    """How much slower the machine was during a pass tagged ``by`` than while the ops were timed: the median of
    its observations' ratios (reference time over the ops' baseline). None with fewer than ``min_checks``.

    With ``ref`` and ``baseline_ms`` (a validation after the build: the reference's LUT entry), only that op's
    observations count, each against ``baseline_ms``: the rounds a store kept from an earlier validation were
    observed against whatever LUT was current then, and are priced with this one."""
    ratios = [float(c["median_ms"]) / baseline_ms if baseline_ms else c.get("ratio")
              for c in observations(checks, by, ref)]
    ratios = [r for r in ratios if isinstance(r, (int, float)) and math.isfinite(r) and r > 0]
    return statistics.median(ratios) if len(ratios) >= min_checks else None
