"""LUTs with made-up latencies, for tests, query-speed benchmarks and documentation -- never for predictions.

The header names the device ``synthetic``, so such a LUT cannot be mistaken for a measured one, and measuring
missing ops into it fails (there is no such device).
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from latency_lut import __version__
from latency_lut.lut import LUT, Entry
from latency_lut.measure import Stats
from latency_lut.ops import OpSpec
from latency_lut.spaces import SearchSpace


def constant_stats(ms: float, count: int = 3) -> Stats:
    return Stats(count=count, median=ms, p10=ms, p25=ms, p75=ms, p90=ms, mean=ms, std=0.0, cv=0.0, min=ms, max=ms)


def synthetic_lut(space: SearchSpace, seed: int = 0, extra: Iterable[OpSpec] = (),
                  lo: float = 0.05, hi: float = 2.0) -> LUT:
    """Every op of ``space`` (plus ``extra``) with a latency drawn uniformly from [lo, hi] ms; reproducible."""
    rng = random.Random(seed)
    specs = {s.key: s for s in [*space.unique_specs(), *extra] if not s.is_identity}
    entries = {k: Entry(s, constant_stats(round(rng.uniform(lo, hi), 6))) for k, s in sorted(specs.items())}
    header = {
        "device": "synthetic", "device_kind": "synthetic", "device_info": {}, "runtime": "none",
        "runtime_version": "0", "threads": 1, "dtype": "fp32", "unit": "ms", "protocol": {}, "exporter": {},
        "space": {**space.describe(), "id": space.id}, "tool_version": __version__,
        "created": "1970-01-01T00:00:00+00:00", "complete": True, "calibration": None,
    }
    return LUT(header, entries)
