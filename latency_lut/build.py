"""Building a LUT: export what is missing, measure what the store lacks, aggregate the store into a LUT.

The store is the source of truth; a LUT is a view of it. Each op is committed to the store as soon as it is
measured, so an interrupted build resumes where it stopped and a finished one is rebuilt from the store without
measuring anything.
"""

from __future__ import annotations

import contextlib
import math
import random
import statistics
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any
from typing import Protocol as _Protocol

from latency_lut import __version__
from latency_lut.backends.base import Backend
from latency_lut.devices import Device
from latency_lut.drift import DriftGuard, Watch
from latency_lut.export import export_many, exporter_info
from latency_lut.lut import LUT
from latency_lut.measure import Protocol, compute_stats, measure_gated, protocol_seconds
from latency_lut.metrics import kendall_tau, spread
from latency_lut.networks import sample_archs
from latency_lut.ops import OpSpec
from latency_lut.spaces import SearchSpace
from latency_lut.store import Config, Record, Store

DEFAULT_ROUNDS = 3
# The ops whose median round is more than EXTRA_OVER_FASTEST slower than their fastest get EXTRA_ROUNDS more (see
# noisy_rounds).
EXTRA_ROUNDS = 2
EXTRA_OVER_FASTEST = 0.08
# Architectures sampled for the header's split-half reliability (a fixed seed: the same archs for every build).
RELIABILITY_ARCHS, RELIABILITY_SEED = 200, 12


class Progress(_Protocol):
    """Receives build progress: a phase starts with its total, then advances one op at a time."""

    def start(self, phase: str, total: int) -> None: ...
    def advance(self, key: str) -> None: ...
    def finish(self) -> None: ...


@dataclass
class BuildResult:
    lut: LUT
    measured: int  # ops that had at least one round to take
    reused: int  # ops whose every round was already in the store
    flagged: list[str]
    export_seconds: float
    measure_seconds: float
    rounds: int = 1
    drift: dict[str, int] = field(default_factory=dict)  # this run's drift guard: checks, drifts, remeasured
    # Wall seconds the measurement took per second the protocol alone accounts for (session creation, input
    # setup, a busy host): time budgets of later passes on the same device scale their estimates by it. None when
    # nothing was measured.
    cost_ratio: float | None = None
    failed: dict[str, str] = field(default_factory=dict)  # key -> why it could not be exported/quantized
    # The drift guard as this build left it (its baseline, its band): the calibration pass observes its reference
    # between the networks with it. None without a guard, or when the build had nothing to measure.
    watch: Watch | None = None


def config_for(device: Device, backend: Backend, protocol: Protocol, dtype: str | None = None) -> Config:
    """The store configuration of a build: what must match for a stored measurement to be reused.

    ``dtype`` defaults to the backend's; the quantizer's identity is part of the exporter's."""
    dtype = dtype or backend.dtype
    exporter = exporter_info(backend.artifact_format, dtype) if backend.artifact_format else {}
    settings: dict[str, Any] = {**backend.settings(), "dtype": dtype, "exporter": exporter,
                                "protocol": protocol.to_dict()}
    return Config(device.name, backend.fingerprint(), backend.runtime, settings)


def lut_header(device: Device, backend: Backend, config: Config, space: SearchSpace, complete: bool,
               env: dict[str, Any] | None = None) -> dict[str, Any]:
    s = config.settings
    return {
        "device": device.name,
        "device_kind": device.kind,
        "device_info": env if env is not None else backend.device_info(),
        "runtime": backend.runtime,
        "runtime_version": str(s["runtime_version"]),
        "threads": int(s["threads"]),
        "dtype": s["dtype"],
        "unit": "ms",
        "protocol": s["protocol"],
        "exporter": s["exporter"],
        "settings": {k: v for k, v in s.items() if k not in ("protocol", "exporter")},
        "settings_hash": config.hash,
        "space": {**space.describe(), "id": space.id},
        "tool_version": __version__,
        "complete": complete,
        "calibration": None,
    }


def build_lut(
    space: SearchSpace,
    device: Device,
    backend: Backend,
    store: Store,
    protocol: Protocol,
    *,
    specs: Sequence[OpSpec] | None = None,
    jobs: int = 1,
    progress: Progress | None = None,
    rounds: int = DEFAULT_ROUNDS,
    guard: DriftGuard | None = DriftGuard(),
    seed: int = 0,
    extra_rounds: int = EXTRA_ROUNDS,
) -> BuildResult:
    """Measure every op of ``space`` (or ``specs``) in ``rounds`` interleaved rounds; return the LUT.

    Round r visits the ops that lack a round-r measurement in the store, in its own shuffled order, so a burst of
    load lands on different ops in different rounds; each op's round is committed as soon as it is taken, so a
    kill loses at most the op in flight and a rerun resumes mid-round. With a ``guard``, a reference op is
    re-timed every ``guard.every`` ops and the ops timed since the last good check are re-taken when it drifted.
    Then the ops whose median round is slowed get ``extra_rounds`` more rounds (see :func:`noisy_rounds`).
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a whole number >= 1, got {rounds!r}")
    if isinstance(extra_rounds, bool) or not isinstance(extra_rounds, int) or extra_rounds < 0:
        raise ValueError(f"extra rounds must be a whole number >= 0, got {extra_rounds!r}")
    specs = list(specs if specs is not None else space.unique_specs())
    config = config_for(device, backend, protocol)
    have = store.round_records(config, [s.key for s in specs])
    todo = [[s for s in specs if r not in have.get(s.key, {})] for r in range(rounds)]
    extended = not any(todo)  # every base round is in the store: the extra rounds are known now
    if extended:
        todo += noisy_rounds(have, specs, rounds, extra_rounds)
    need = {s.key: s for r in todo for s in r}
    ref = reference_op(specs) if guard and need else None
    if ref is not None:
        need.setdefault(ref.key, ref)

    t0 = time.perf_counter()
    artifacts: dict[str, Any] = {}
    failed: dict[str, str] = {}
    if need and backend.artifact_format:
        if progress:
            progress.start(f"export {backend.artifact_format}" + _dtype_label(backend.dtype), len(need))
        artifacts = export_many(list(need.values()), backend.artifact_format, jobs=jobs, dtype=backend.dtype,
                                errors=failed, on_done=(lambda s: progress.advance(s.key)) if progress else None)
        # a block that failed to quantize is named in the result and left out; the LUT stays incomplete
        todo = [[s for s in ops if s.key not in failed] for ops in todo]
        if ref is not None and ref.key in failed:
            ref, guard = None, None  # no drift guard without its reference
        if progress:
            progress.finish()
    t1 = time.perf_counter()

    flagged: set[str] = set()
    drift = {"checks": 0, "drifts": 0, "remeasured": 0, "rebased": 0}
    watch: Watch | None = None
    if any(todo):
        env = backend.device_info()
        session = store.start_session(config, env, __version__)

        cost = [0.0, 0.0]  # wall seconds of the attempts, and what the protocol alone accounts for

        def take(spec: OpSpec, r: int) -> list[int]:
            ta = time.perf_counter()
            result = measure_gated(partial(backend.measure, spec, artifacts.get(spec.key), protocol), protocol)
            cost[0] += time.perf_counter() - ta
            cost[1] += sum(protocol_seconds(a.summary().median, protocol) for a in result.attempts)
            if result.flagged:
                flagged.add(spec.key)
            return store.add(session, spec.key, result, round_no=r)

        watch = (Watch(guard, backend, ref, artifacts.get(ref.key), protocol, store, session)
                 if guard and ref is not None else None)
        drift = watch.counts if watch else drift

        if progress:
            progress.start(f"measure {backend.runtime} x{rounds}", sum(map(len, todo)))
        if watch:
            watch.check(0)  # the baseline
        mine: set[str] = set()
        for r, ops in enumerate(todo):  # the extra rounds are appended to todo after the last base round
            order = list(ops)
            random.Random(f"build-{seed}-round-{r}").shuffle(order)
            again: deque[OpSpec] = deque()  # this build's own re-takes after a drift
            retaken: dict[str, int] = {}
            since: list[tuple[OpSpec, list[int]]] = []

            def verify(r: int = r, again: deque[OpSpec] = again, retaken: dict[str, int] = retaken) -> None:
                """A drift check after a block of ops; a drift rejects the block and queues it again."""
                nonlocal since
                assert watch is not None
                if watch.block_drifted(r):
                    redo = [(sp, ids) for sp, ids in since if retaken.get(sp.key, 0) < guard.max_remeasure]
                    store.reject([x for _, ids in redo for x in ids], "drift guard: reference op drifted")
                    for sp, _ in redo:
                        retaken[sp.key] = retaken.get(sp.key, 0) + 1
                        again.append(sp)
                    drift["remeasured"] += len(redo)
                since = []

            # A concurrent build on the same store claims (op, round) pairs too: each is taken by one of them.
            # Closed on any exception, so a failed build leaves no live claim behind for its own rerun.
            with contextlib.closing(store.claim_each(config, order, key=lambda s: s.key, round_no=r)) as claimed:
                while True:
                    spec = again.popleft() if again else next(claimed, None)
                    if spec is None:
                        if watch and since:  # the round's last block is checked too
                            verify()
                            if again:
                                continue
                        break
                    since.append((spec, take(spec, r)))
                    mine.add(spec.key)
                    if progress and retaken.get(spec.key, 0) == 0:
                        progress.advance(spec.key)
                    if watch and len(since) >= guard.every:
                        verify()
            if r == rounds - 1 and not extended:  # the base rounds are in: which ops need more?
                extended = True
                more = noisy_rounds(store.round_records(config, [s.key for s in specs]), specs, rounds,
                                    extra_rounds)
                more = [[s for s in ops if s.key not in failed] for ops in more]
                lack = {s.key: s for ops in more for s in ops if s.key not in artifacts}
                if lack and backend.artifact_format:  # ops whose base rounds were reused: from the cache
                    artifacts.update(export_many(list(lack.values()), backend.artifact_format, jobs=jobs,
                                                 dtype=backend.dtype, errors=failed))
                todo += more
                if progress and any(more):
                    progress.finish()
                    noisy = len({s.key for ops in more for s in ops})
                    progress.start(f"re-time {noisy} noisy ops x{extra_rounds}", sum(map(len, more)))
        if progress:
            progress.finish()
    t2 = time.perf_counter()

    lut = aggregate(store, config, space, device, backend, specs, rounds=rounds, guard=guard,
                    extra_rounds=extra_rounds)
    measured = len(mine) if any(todo) else 0  # ops this build took rounds of (a concurrent one took the rest)
    ratio = cost[0] / cost[1] if any(todo) and cost[1] > 0 else None
    return BuildResult(lut, measured, len(specs) - measured - len(failed), sorted(flagged), t1 - t0, t2 - t1,
                       rounds, drift, ratio, failed, watch)


def _dtype_label(dtype: str) -> str:
    return "" if dtype == "fp32" else f" {dtype}"


def reference_op(specs: Sequence[OpSpec]) -> OpSpec | None:
    """The drift guard's reference: the op of the most FLOPs.

    A neighbour on the benchmark's core takes turns with it in time slices of a few ms and evicts its caches on
    each turn; an op of a fraction of a ms mostly runs between turns, so its median (and the medians of ops like
    it) hardly moves, while the heavy ops, whose runs span a turn, slow by 20-140%. The reference must move with
    the ops a load slows, so it is the heaviest one; a check costs about the same (``min_seconds`` bounds it).
    """
    real = [s for s in specs if not s.is_identity]
    return max(real, key=lambda s: (s.flops, s.key)) if real else None


def noisy_rounds(have: dict[str, dict[int, Record]], specs: Sequence[OpSpec], rounds: int,
                 extra_rounds: int, over_fastest: float = EXTRA_OVER_FASTEST) -> list[list[OpSpec]]:
    """The extra rounds a build still owes: for each of rounds ``rounds`` .. ``rounds + extra_rounds - 1``, the
    ops lacking it whose median base round is slower than their fastest by more than ``over_fastest``,
    (median - min) / median.

    Why: on a shared host a neighbour's burst slows every op timed during it by 10-20% (never speeds one up), and
    an op with two of its three rounds in bursts keeps a slowed median; those entries made the p90 of two cold
    builds' differences. One slowed round leaves the median alone, so only a median above the fastest round is a
    reason: five rounds then outvote two slowed ones. On the two builds of a reproducibility run this rule asked
    for 13 of 218 op-builds and gave a p90 difference of 5.1%; the round spread (max - min) > 10% asked for 74 and
    gave 4.6%; none, 6.7%. Pure: decided from the stored base rounds alone, so a rerun owes the same rounds.
    """
    noisy = []
    for s in specs:
        recs = have.get(s.key, {})
        meds = [recs[r].stats.median for r in range(rounds) if r in recs]
        if len(meds) == rounds > 1 and (med := statistics.median(meds)) > 0 and (med - min(meds)) / med > over_fastest:
            noisy.append(s)
    return [[s for s in noisy if r not in have.get(s.key, {})] for r in range(rounds, rounds + extra_rounds)]


def combine_rounds(recs: dict[int, Record], rounds: int | None = None) -> Record:
    """One entry from an op's rounds: its latency is the median of the round medians.

    The other statistics are those of all rounds' samples pooled (or, for tools that report aggregates only, of
    the round closest to that median), with the quartiles widened to hold the median. The round medians and
    their spread, (max - min) / median, go into the entry's extra.
    """
    use = sorted(r for r in recs if rounds is None or r < rounds) or sorted(recs)
    meds = [recs[r].stats.median for r in use]
    med = statistics.median(meds)
    closest = recs[min(use, key=lambda r: abs(recs[r].stats.median - med))]
    pooled = [x for r in use for x in (recs[r].samples_ms or [])]
    if all(recs[r].samples_ms for r in use):
        st = compute_stats(pooled)
    else:
        st = replace(closest.stats, count=sum(recs[r].stats.count for r in use))
    st = replace(st, median=med, p25=min(st.p25, med), p10=min(st.p10, med), min=min(st.min, med),
                 p75=max(st.p75, med), p90=max(st.p90, med), max=max(st.max, med))
    extra = dict(closest.extra)
    extra.pop("round", None)
    if len(use) > 1:
        extra.update(round_ms=[round(m, 6) for m in meds], round_spread=round(spread(meds), 6))
    return Record(closest.key, st, any(recs[r].flagged for r in use), sum(recs[r].attempts for r in use), extra,
                  max(recs[r].created for r in use))


def split_half_reliability(space: SearchSpace, rounds: dict[str, dict[int, Record]],
                           n: int = RELIABILITY_ARCHS, seed: int = RELIABILITY_SEED) -> dict[str, Any] | None:
    """How well the table agrees with itself: sampled architectures' totals from the even rounds against the odd.

    Kendall's tau of the two rankings (1 = the halves order every pair alike) and the RMS relative difference of
    the two totals. None with fewer than 2 rounds or 2 architectures whose every op has both halves.
    """
    even, odd = [], []
    for net in sample_archs(space, n, seed, named=False):
        tot = [0.0, 0.0]
        for spec in net.specs:
            if spec.is_identity:
                continue
            recs = rounds.get(spec.key, {})
            halves = [[recs[r].stats.median for r in sorted(recs) if r % 2 == h] for h in (0, 1)]
            if not all(halves):
                break
            tot[0] += statistics.median(halves[0])
            tot[1] += statistics.median(halves[1])
        else:
            even.append(tot[0])
            odd.append(tot[1])
    if len(even) < 2:
        return None
    diffs = [(a - b) / ((a + b) / 2) for a, b in zip(even, odd)]
    # A half whose totals are all equal (a table of few ops, a phone that reports whole microseconds) has no
    # ranking: tau is then None, not a NaN that no LUT file can hold.
    tau = kendall_tau(even, odd)
    return {"kendall_tau": round(tau, 6) if math.isfinite(tau) else None, "archs": len(even), "seed": seed,
            "rms_diff": round(statistics.fmean(d * d for d in diffs) ** 0.5, 6),
            "method": "totals of sampled architectures from the even rounds against the odd rounds"}


def aggregate(store: Store, config: Config, space: SearchSpace, device: Device, backend: Backend,
              specs: Sequence[OpSpec] | None = None, *, rounds: int | None = None,
              guard: DriftGuard | None = None, extra_rounds: int = 0) -> LUT:
    """The LUT of a configuration from the store's accepted measurements (the first ``rounds`` rounds of each,
    plus the ``extra_rounds`` that the noisy ones got)."""
    specs = list(specs if specs is not None else space.unique_specs())
    by_round = store.round_records(config, [s.key for s in specs])
    records = {k: combine_rounds(v, rounds and rounds + extra_rounds) for k, v in by_round.items()}
    env = store.session_env(config) or None
    complete = all(s.key in records for s in space.unique_specs())
    header = lut_header(device, backend, config, space, complete, env)
    header["rounds"] = rounds or max((len(v) for v in by_round.values()), default=0)
    if extra_rounds and rounds:
        header["extra_rounds"] = {"rounds": extra_rounds, "median_over_fastest": EXTRA_OVER_FASTEST,
                                  "ops": sum(any(r >= rounds for r in v) for v in by_round.values())}
    header["reliability"] = split_half_reliability(space, by_round)
    checks = [c for c in store.drift_checks(config) if not c.get("observed")]  # a calibration pass's are its own
    if guard is not None or checks:
        header["drift_guard"] = {**(guard.to_dict() if guard else {}), "checks": len(checks),
                                 "drifts": sum(bool(c.get("drifted")) for c in checks),
                                 "rebased": sum(bool(c.get("rebased")) for c in checks),
                                 "remeasured": store.rejected_count(config)}
    return LUT.from_records(header, specs, records)
