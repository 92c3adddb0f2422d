"""Whole networks as measurable units, and their interleaved, repeated end-to-end measurement.

A :class:`NetworkSpec` quacks like an :class:`~latency_lut.ops.OpSpec` (``key``, ``input_shape``,
``build_module()``), so every backend, the exporter cache and the store handle a whole model exactly as they
handle one block. Its key lives in its own key space (``net-...``), which no op key can collide with.

Measuring on a shared, noisy machine: models are measured in *rounds*; each round visits every model once, in a
fresh random order, so a burst of load from a neighbour lands on different models in different rounds instead of
on one model's whole measurement. A model's latency is the median of its per-round medians, and the spread of
those round medians is its measurement noise.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latency_lut import __version__
from latency_lut.errors import LatencyLutError
from latency_lut.measure import GatedResult, Protocol, RunResult, compute_stats
from latency_lut.metrics import robust_cv, spread
from latency_lut.ops import OpSpec
from latency_lut.spaces import Architecture, SearchSpace, from_description

NET_PREFIX = "net-"


@dataclass(frozen=True)
class NetworkSpec:
    """One whole architecture of a space, measurable by any backend (duck-types ``OpSpec``)."""

    space: SearchSpace
    arch: Architecture
    label: str = ""

    @property
    def key(self) -> str:
        """``net-{space id}-{choices}[-h{head}]``: one character per layer while there are <= 10 candidates."""
        sep = "" if self.space.num_candidates <= 10 else "."
        head = f"-h{self.arch.head}" if self.arch.head else ""
        return f"{NET_PREFIX}{self.space.id}-{sep.join(str(c) for c in self.arch.choices)}{head}"

    @property
    def name(self) -> str:
        return self.label or self.arch.name

    @property
    def input_shape(self) -> tuple[int, ...]:
        r = self.space.resolution
        return (1, self.space.in_channels, r, r)

    @property
    def specs(self) -> list[OpSpec]:
        return self.space.arch_specs(self.arch)

    @property
    def flops(self) -> int:
        return sum(s.flops for s in self.specs)

    def build_module(self) -> Any:
        return self.space.build_model(self.arch)

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space.describe(), "choices": list(self.arch.choices), "head": self.arch.head,
                "name": self.arch.name, "label": self.label}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetworkSpec:
        space = from_description(d["space"])
        arch = Architecture(d["name"], tuple(int(c) for c in d["choices"]), d.get("head"))
        return cls(space, space.parse_arch(arch), d.get("label", ""))


def sample_archs(space: SearchSpace, n: int, seed: int, named: bool = True) -> list[NetworkSpec]:
    """``n`` architectures drawn uniformly (every layer's candidate independently, from that layer's own list), then
    the space's named ones.

    Duplicates are re-drawn (they would count one model twice); the named architectures come last and keep their
    names, the random ones are labelled ``rand-{seed}-{i}``.
    """
    rng = random.Random(seed)
    nets: list[NetworkSpec] = []
    seen: set[tuple[int, ...]] = set()
    counts = [len(layer.candidates) for layer in space.layers()]
    total = math.prod(counts)
    while len(nets) < n:
        choices = tuple(rng.randrange(c) for c in counts)
        if choices in seen and len(seen) < total:
            continue
        seen.add(choices)
        nets.append(NetworkSpec(space, Architecture("custom", choices), f"rand-{seed}-{len(nets):03d}"))
    if named:
        for name in sorted(space.archs):
            nets.append(NetworkSpec(space, space.parse_arch(name), name))
    return nets


# ---- export ------------------------------------------------------------------------------------------------
def _export_worker(args: tuple[dict[str, Any], str, str]) -> str:
    from latency_lut.export import export_spec

    d, fmt, dtype = args
    return str(export_spec(NetworkSpec.from_dict(d), fmt, dtype=dtype))  # type: ignore[arg-type]


def export_networks(
    nets: Sequence[NetworkSpec], fmt: str, *, jobs: int = 1, on_done: Callable[[NetworkSpec], None] | None = None,
    dtype: str = "fp32",
) -> dict[str, Path | LatencyLutError]:
    """Export each network (cached by key like any op; quantized whole for int8); a failure is returned for that
    model, not raised."""
    from latency_lut.export import artifact_path, export_pool, export_spec

    out: dict[str, Path | LatencyLutError] = {}
    todo = []
    for net in nets:
        path = artifact_path(net, fmt, dtype=dtype)  # type: ignore[arg-type]
        if path.exists():
            out[net.key] = path
            if on_done:
                on_done(net)
        else:
            todo.append(net)
    if jobs <= 1 or len(todo) <= 1:
        for net in todo:
            out[net.key] = _try(lambda n=net: export_spec(n, fmt, dtype=dtype))  # type: ignore[misc]
            if on_done:
                on_done(net)
        return out
    from concurrent.futures import as_completed

    with export_pool(jobs) as pool:
        futs = {pool.submit(_export_worker, (n.to_dict(), fmt, dtype)): n for n in todo}
        for fut in as_completed(futs):
            net = futs[fut]
            out[net.key] = _try(lambda f=fut: Path(f.result()))  # type: ignore[misc]
            if on_done:
                on_done(net)
    return out


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _try(fn: Callable[[], Path]) -> Path | LatencyLutError:
    try:
        return fn()
    except LatencyLutError as e:
        return e
    except Exception as e:  # a converter crash on one model must not end the run; it is reported per model
        return LatencyLutError(f"{type(e).__name__}: {e}")


# ---- measurement -------------------------------------------------------------------------------------------
@dataclass
class NetMeasurement:
    """All rounds of one model. ``error`` is set when the model could not be run; it then has no latency."""

    key: str
    rounds: list[RunResult] = field(default_factory=list)
    error: str | None = None

    @property
    def round_medians(self) -> list[float]:
        return [r.summary().median for r in self.rounds]

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.rounds)

    @property
    def median_ms(self) -> float:
        """The model's latency: the median of its per-round medians."""
        return statistics.median(self.round_medians)

    # One round has no spread: None (strict JSON and the tables show it as unknown), never NaN.
    @property
    def spread(self) -> float | None:
        return _finite(spread(self.round_medians))

    @property
    def noise(self) -> float | None:
        return _finite(robust_cv(self.round_medians))

    @property
    def median_round(self) -> int:
        """Index of the round whose median is closest to the model's latency (the store's accepted attempt)."""
        m = self.median_ms
        return min(range(len(self.rounds)), key=lambda i: abs(self.round_medians[i] - m))

    def summary(self) -> dict[str, Any]:
        all_samples = [x for r in self.rounds for x in r.samples_ms]
        return {"median_of_medians": self.median_ms, "round_medians": self.round_medians, "spread": self.spread,
                "noise": self.noise, "runs": len(all_samples),
                "pooled": compute_stats(all_samples).to_dict() if all_samples else None}


# Whole networks are interleaved with a re-timing of the drift guard's reference every few models: a network
# runs as long as a dozen ops, and the observations must stay a small share of a pass.
NETWORKS_PER_CHECK = 4


def measure_networks(
    backend: Any,
    nets: Sequence[NetworkSpec],
    artifacts: dict[str, Path | LatencyLutError | None],
    protocol: Protocol,
    *,
    rounds: int = 5,
    seed: int = 0,
    on_measured: Callable[[NetworkSpec, int], None] | None = None,
    done: dict[str, dict[int, RunResult]] | None = None,
    on_round: Callable[[NetworkSpec, int, RunResult], None] | None = None,
    deadline: float | None = None,
    watch: Any = None,
    watch_tag: str = "",
) -> dict[str, NetMeasurement]:
    """Measure every model ``rounds`` times, interleaved: round r visits all models in its own shuffled order.

    ``done`` holds rounds already taken (from the store, by model key and round index): they are kept and not
    taken again, so an interrupted run resumes mid-round. ``on_round`` receives each new round as soon as it is
    taken (to store it). With a ``deadline`` (a ``time.perf_counter()`` value), a round after the first is not
    started when the previous one says it would end past it, and the first round stops at it (once two models
    are measured): the models it did not reach are recorded as not measured, so a budget holds even when the
    estimate that chose the models was short (a busy host stretches wall time per second of thread CPU time).
    A model whose export failed, or whose run raises, is recorded with its error and skipped in later rounds.

    With a ``watch`` (a :class:`latency_lut.drift.Watch`, the build's own when this is its calibration pass), the
    reference op is observed after every ``NETWORKS_PER_CHECK`` models measured and at the end of each round
    (recorded in the store, tagged ``watch_tag``).
    """
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    done = done or {}
    res: dict[str, NetMeasurement] = {}
    taken: dict[str, dict[int, RunResult]] = {}
    for net in nets:
        art = artifacts.get(net.key)
        res[net.key] = NetMeasurement(net.key, error=str(art) if isinstance(art, LatencyLutError) else None)
        taken[net.key] = {r: x for r, x in done.get(net.key, {}).items() if r < rounds}
    last = 0.0
    for r in range(rounds):
        started = time.perf_counter()
        if r and deadline is not None and started + last > deadline:
            break
        order = list(nets)
        random.Random(f"{seed}-round-{r}").shuffle(order)
        since = 0
        for net in order:
            m = res[net.key]
            if (not r and deadline is not None and m.error is None and not taken[net.key]
                    and time.perf_counter() > deadline and sum(bool(t) for t in taken.values()) >= 2):
                m.error = "not measured: the time budget ran out in the first round"
            if m.error is None and r not in taken[net.key]:
                art = artifacts.get(net.key)
                try:
                    taken[net.key][r] = result = backend.measure(net, art, protocol)
                except Exception as e:  # a runtime that rejects one model: report it, measure the rest
                    m.error = f"{type(e).__name__}: {e}".splitlines()[0]
                else:
                    since += 1
                    if on_round:
                        on_round(net, r, result)
            if on_measured:
                on_measured(net, r)
            if watch is not None and since >= NETWORKS_PER_CHECK:
                watch.observe(r, watch_tag)
                since = 0
        if watch is not None and since:
            watch.observe(r, watch_tag)
        last = time.perf_counter() - started
    for key, m in res.items():
        m.rounds = [taken[key][r] for r in sorted(taken[key])]
    return res


def stored_rounds(store: Any, config: Any, nets: Sequence[Any]) -> dict[str, dict[int, RunResult]]:
    """The rounds of these models a store holds for a configuration, as the backend returned them."""
    recs = store.round_records(config, [n.key for n in nets])
    return {key: {r: RunResult(list(rec.samples_ms or []), None if rec.samples_ms else rec.stats, dict(rec.extra))
                  for r, rec in by_round.items()} for key, by_round in recs.items()}


def measure_stored(
    backend: Any, nets: Sequence[Any], artifacts: dict[str, Path | LatencyLutError | None], protocol: Protocol, *,
    rounds: int, seed: int = 0, store: Any | None = None, config: Any = None, tag: str = "validate",
    on_measured: Callable[[Any, int], None] | None = None, deadline: float | None = None, watch: Any = None,
) -> dict[str, NetMeasurement]:
    """:func:`measure_networks` with the store in the loop, the build's per-round path: the rounds ``store``
    already holds for ``config`` are reused, and each new round is committed as it is taken
    (``store.add(..., round_no=r)``, its extra naming the model and ``tag``), so a killed run -- a validation, a
    ``measure`` of whole models -- resumes mid-round. A drift ``watch`` observes the reference between them (its
    checks tagged ``tag``). Models are networks of a space or ``models.ModelUnit``s (anything with ``key`` and
    ``to_dict()``)."""
    if store is None:
        return measure_networks(backend, nets, artifacts, protocol, rounds=rounds, seed=seed,
                                on_measured=on_measured, deadline=deadline, watch=watch, watch_tag=tag)
    session: list[int] = []

    def keep(net: Any, r: int, result: RunResult) -> None:
        if not session:
            session.append(store.start_session(config, backend.device_info(), __version__))
        noisy = result.summary().noise > protocol.noise_threshold
        result.extra.update(network=net.to_dict(), by=tag)
        store.add(session[0], net.key, GatedResult([result], 0, noisy), round_no=r)

    return measure_networks(backend, nets, artifacts, protocol, rounds=rounds, seed=seed, on_measured=on_measured,
                            done=stored_rounds(store, config, nets), on_round=keep, deadline=deadline,
                            watch=watch, watch_tag=tag)
