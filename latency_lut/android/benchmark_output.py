"""Parsing what TFLite's ``benchmark_model`` prints (every variant in FACTS §6).

The tool prints aggregates only, in microseconds:

* ``count=50 first=58154 curr=53809 min=53077 max=60727 avg=55043.2 std=1562`` once for the warmup runs and once
  for the timed runs; some builds append ``p5= median= p95=``; when every run took the same time it prints
  ``count=50 curr=53809(all same)`` (and ``count=1 curr=X`` for a single run);
* ``Inference timings in us: Init: ..., First inference: ..., Warmup (avg): ..., Inference (avg): ...``, or in older
  builds ``Average inference timings in us: Warmup: ..., Init: ..., Inference: ...``;
* with ``--enable_op_profiling=true``, tables whose header is ``[node type] [first] [avg ms] [%] [cdf%] [mem KB]
  [times called] [Name]`` (older builds add ``[start]`` after the node type).

Newer builds prefix every line with a log tag (``INFO: ``); older ones do not. Both are accepted.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from latency_lut.measure import Stats, stats_from_aggregates

_LOG_TAG = re.compile(r"^\s*(?:INFO|WARNING|WARN|ERROR|VERBOSE|DEBUG)\s*:\s+")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_KV = re.compile(rf"(\w+)=({_NUMBER})(\(all same\))?")
_TIMINGS = re.compile(rf"([A-Za-z][A-Za-z ()]*?)\s*:\s*({_NUMBER})")
_ERROR_HINTS = ("error", "failed", "failure", "not found", "cannot", "can't", "could not", "aborted",
                "segmentation", "permission denied", "exec format", "no such file", "unrecognized", "invalid")

# z-scores of the normal distribution, for quantiles the tool does not print.


class BenchmarkOutputError(ValueError):
    """The text holds no timed-run statistics (the tool failed or printed something unknown)."""


@dataclass(frozen=True)
class RunStats:
    """One ``count=`` line, in microseconds. Fields the line did not print are None."""

    count: int
    first: float | None = None
    curr: float | None = None
    min: float | None = None
    max: float | None = None
    avg: float | None = None
    std: float | None = None
    p5: float | None = None
    median: float | None = None
    p95: float | None = None
    all_same: bool = False

    @property
    def mean(self) -> float:
        """The average; for an all-same (or single-run) line, the one value it printed."""
        value = self.avg if self.avg is not None else self.curr
        if value is None:
            raise BenchmarkOutputError(f"a benchmark statistics line with count={self.count} prints no time")
        return value


@dataclass(frozen=True)
class ProfileNode:
    """One row of an op-profiling table (times in ms, as the tool prints them)."""

    node_type: str
    name: str
    avg_ms: float
    first_ms: float | None = None
    start_ms: float | None = None
    percent: float | None = None
    mem_kb: float | None = None
    times_called: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class BenchmarkOutput:
    """Everything parsed out of one run of the tool."""

    runs: RunStats | None
    warmup: RunStats | None = None
    timings_us: dict[str, float] = field(default_factory=dict)
    nodes: list[ProfileNode] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def inference_avg_us(self) -> float | None:
        return self.timings_us.get("Inference (avg)", self.timings_us.get("Inference"))

    def to_stats(self) -> tuple[Stats, str]:
        """The timed runs as :class:`Stats` in ms, and how its quantiles were obtained.

        The tool prints count, min, max, avg and std (and p5/median/p95 in some builds), never the quartiles or
        p10/p90 the LUT keeps, so those are estimated: from a normal distribution fitted separately to each side
        of the printed median (using p5 and p95) when the build prints them, otherwise from avg and std, and
        always clipped to the printed min and max. Without a printed median, the median is the average.
        """
        r = self.runs
        if r is None or r.count < 1:
            raise BenchmarkOutputError("benchmark_model printed no timed runs")
        ms = 1e-3

        def scaled(v: float | None) -> float | None:
            return None if v is None else v * ms

        return stats_from_aggregates(
            r.count, r.mean * ms, (r.std or 0.0) * ms,
            (r.min if r.min is not None else r.mean) * ms, (r.max if r.max is not None else r.mean) * ms,
            scaled(r.median), scaled(r.p5), scaled(r.p95), all_same=bool(r.all_same),
        )

    def error_text(self, limit: int = 400) -> str:
        """The tool's own error lines on one line (for a user-facing message)."""
        text = " | ".join(self.errors)
        return text if len(text) <= limit else text[: limit - 3] + "..."


def _strip_tag(line: str) -> str:
    return _LOG_TAG.sub("", line.rstrip("\r\n")).strip()


def parse_run_stats(line: str) -> RunStats | None:
    """A ``count=...`` statistics line (log tag already stripped), or None if the line is not one."""
    if not line.startswith("count="):
        return None
    values: dict[str, float] = {}
    all_same = False
    for key, num, same in _KV.findall(line):
        values[key] = float(num)
        all_same = all_same or bool(same)
    count = int(values.pop("count"))
    known = {f for f in RunStats.__dataclass_fields__ if f not in ("count", "all_same")}
    return RunStats(count=count, all_same=all_same, **{k: v for k, v in values.items() if k in known})


def _parse_timings(line: str) -> dict[str, float]:
    body = line.split(" in us:", 1)[1]
    return {label.strip(): float(num) for label, num in _TIMINGS.findall(body)}


def _cells(line: str, ncols: int) -> list[str]:
    if "\t" in line:
        cells = [c.strip() for c in line.strip().split("\t") if c.strip()]
    else:
        cells = line.split(None, ncols - 1)
    return cells


def _num(text: str) -> float | None:
    try:
        return float(text.rstrip("%"))
    except ValueError:
        return None


def _parse_table(header: str, rows: list[str]) -> list[ProfileNode]:
    cols = [c.strip().lower() for c in re.findall(r"\[([^\]]+)\]", header)]
    nodes: list[ProfileNode] = []
    for row in rows:
        cells = _cells(row, len(cols))
        if len(cells) != len(cols):
            continue
        rec = dict(zip(cols, cells))
        avg = _num(rec.get("avg ms", ""))
        if avg is None:
            continue
        times = _num(rec.get("times called", ""))
        nodes.append(ProfileNode(
            node_type=rec.get("node type", ""), name=rec.get("name", ""), avg_ms=avg,
            first_ms=_num(rec.get("first", "")), start_ms=_num(rec["start"]) if "start" in rec else None,
            percent=_num(rec.get("%", "")), mem_kb=_num(rec.get("mem kb", "")),
            times_called=int(times) if times is not None else None,
        ))
    return nodes


def _profile_nodes(lines: list[str]) -> list[ProfileNode]:
    """The per-node table of the timed runs.

    The tool prints one block per phase ("Profiling Info for Benchmark Initialization", "Operator-wise Profiling
    Info for Regular Benchmark Runs"), each with a "Run Order" and a "Top by Computation Time" table (same rows,
    other order). The Run Order table of the regular runs is kept; builds without phase titles print only it.
    """
    section = "regular"
    tables: list[tuple[str, str, list[str]]] = []  # (section, title, rows) of tables with a [Name] column
    title = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        low = line.lower()
        if "profiling info for" in low:
            section = "init" if "initialization" in low else "regular"
        elif line.startswith("="):
            title = line.strip("= ").lower()
        elif "[node type]" in low and "[name]" in low:
            rows = []
            i += 1
            while i < len(lines) and lines[i].strip() and not lines[i].startswith("="):
                rows.append(lines[i])
                i += 1
            tables.append((section, title, [line, *rows]))
            continue
        i += 1
    regular = [t for t in tables if t[0] == "regular"]
    if not regular:
        return []
    chosen = next((t for t in regular if "run order" in t[1]), regular[0])
    return _parse_table(chosen[2][0], chosen[2][1:])


def parse_benchmark_output(text: str) -> BenchmarkOutput:
    """Parse the tool's output. ``runs`` is None when it printed no timed-run statistics (see ``errors``)."""
    raw = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = [_strip_tag(ln) for ln in raw]
    stats: list[RunStats] = []
    timings: dict[str, float] = {}
    errors: list[str] = []
    for original, line in zip(raw, lines):
        rs = parse_run_stats(line)
        if rs is not None:
            stats.append(rs)
        elif " in us:" in line and "timings" in line.lower():
            timings.update(_parse_timings(line))
        elif line and (original.lstrip().startswith("ERROR") or any(h in line.lower() for h in _ERROR_HINTS)):
            errors.append(line)
    out = BenchmarkOutput(runs=None, timings_us=timings, errors=errors)
    if stats:
        # The warmup line comes first and the timed runs last; when the build also prints the average of the timed
        # runs, the line that matches it wins (so nothing appended later can be mistaken for the timed runs).
        runs = stats[-1]
        avg = out.inference_avg_us
        if avg is not None:
            match = [s for s in stats if s.count > 0 and (s.avg or s.curr) is not None
                     and math.isclose(s.mean, avg, rel_tol=1e-3, abs_tol=0.06)]
            if match:
                runs = match[-1]
        out.runs = runs
        earlier = stats[: stats.index(runs)]
        out.warmup = earlier[-1] if earlier else None
    out.nodes = _profile_nodes(lines)
    return out
