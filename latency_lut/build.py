"""Building a LUT: export what is missing, measure what the store lacks, aggregate the store into a LUT.

The store is the source of truth; a LUT is a view of it. Each op is committed to the store as soon as it is
measured, so an interrupted build resumes where it stopped and a finished one is rebuilt from the store without
measuring anything.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from typing import Protocol as _Protocol

from latency_lut import __version__
from latency_lut.backends.base import Backend
from latency_lut.devices import Device
from latency_lut.export import export_many, exporter_info
from latency_lut.lut import LUT
from latency_lut.measure import Protocol, measure_gated
from latency_lut.ops import OpSpec
from latency_lut.spaces import SearchSpace
from latency_lut.store import Config, Store


class Progress(_Protocol):
    """Receives build progress: a phase starts with its total, then advances one op at a time."""

    def start(self, phase: str, total: int) -> None: ...
    def advance(self, key: str) -> None: ...
    def finish(self) -> None: ...


@dataclass
class BuildResult:
    lut: LUT
    measured: int
    reused: int
    flagged: list[str]
    export_seconds: float
    measure_seconds: float


def config_for(device: Device, backend: Backend, protocol: Protocol, dtype: str = "fp32") -> Config:
    """The store configuration of a build: what must match for a stored measurement to be reused."""
    exporter = exporter_info(backend.artifact_format) if backend.artifact_format else {}
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
) -> BuildResult:
    """Measure every op of ``space`` (or ``specs``) not yet in ``store`` for this configuration; return the LUT."""
    specs = list(specs if specs is not None else space.unique_specs())
    config = config_for(device, backend, protocol)
    done = store.completed_keys(config)
    todo = [s for s in specs if s.key not in done]

    t0 = time.perf_counter()
    artifacts: dict[str, Any] = {}
    if todo and backend.artifact_format:
        if progress:
            progress.start(f"export {backend.artifact_format}", len(todo))
        artifacts = export_many(todo, backend.artifact_format, jobs=jobs,
                                on_done=(lambda s: progress.advance(s.key)) if progress else None)
        if progress:
            progress.finish()
    t1 = time.perf_counter()

    flagged: list[str] = []
    measured = 0
    if todo:
        env = backend.device_info()
        session = store.start_session(config, env, __version__)
        if progress:
            progress.start(f"measure {backend.runtime}", len(todo))
        for spec in store.claim_each(config, todo, key=lambda s: s.key):  # a concurrent build takes the rest
            measured += 1
            result = measure_gated(partial(backend.measure, spec, artifacts.get(spec.key), protocol), protocol)
            store.add(session, spec.key, result)
            if result.flagged:
                flagged.append(spec.key)
            if progress:
                progress.advance(spec.key)
        if progress:
            progress.finish()
    t2 = time.perf_counter()

    lut = aggregate(store, config, space, device, backend, specs)
    return BuildResult(lut, measured, len(specs) - measured, flagged, t1 - t0, t2 - t1)


def aggregate(store: Store, config: Config, space: SearchSpace, device: Device, backend: Backend,
              specs: Sequence[OpSpec] | None = None) -> LUT:
    """The LUT of a configuration from the store's accepted measurements."""
    specs = list(specs if specs is not None else space.unique_specs())
    records = store.records(config, [s.key for s in specs])
    env = store.session_env(config) or None
    complete = all(s.key in records for s in space.unique_specs())
    return LUT.from_records(lut_header(device, backend, config, space, complete, env), specs, records)
