"""The one parser of TFLite/LiteRT ``benchmark_model`` output, shared by the Android, iOS and board paths.

What the tool prints, per run (one model), in every era seen in published output (TF 1.13 to LiteRT 2.20)::

    STARTING!                                                    <- a run starts (or "Log parameter values ...")
    Graph: [/data/local/tmp/m.tflite]                            <- parameters, "Name: [value]"
    Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
    count=9 first=64791 curr=57111 min=55878 max=64791 avg=57758.2 std=2665          <- the warmup block
    Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
    count=50 first=58154 curr=53809 min=53077 max=60727 avg=55043.2 std=1562         <- the timed block
    Inference timings in us: Init: 18777, First inference: 64791, Warmup (avg): 57758.2, Inference (avg): 55043.2

Variants read here: ``count=N curr=X(all same)`` and ``count=1 curr=X`` (a single run), both with or without the
``p5= median= p95=`` tail of TF 2.18+; the ``%g`` exponent form (``avg=2.95034e+06``); the old summary
``Average inference timings in us: Warmup: .., Init: .., no stats: ..`` (TF 1.13-2.0, where "no stats" labels the
inference average); the new LiteRT CompiledModel tool (``Inference (avg): 7430.20 ms (10 runs)``, in ms); the
iOS app's results view (``- Average: X ms``); op-profile tables (tab or space aligned, with or without
``[start]``, init and regular-run phases, node names with or without the ``:N`` index). Any prefix a log viewer
adds is removed first: ``INFO:``-style severities, logcat (threadtime, time, brief), Xcode NSLog headers, syslog
headers, ``> `` quoting, indentation.

Which ``count=`` line is the warmup and which the timed runs is decided by the ``Running benchmark for at least
N iterations`` header each follows (the first of a run is the warmup, the second the timed runs), and checked
against the printed parameters and the summary; never by position alone. The op profiler's own
``Timings (microseconds): count=..`` and ``Memory (bytes): count=..`` lines are not run statistics.

Two modes. ``strict`` (ingesting files people copied: iOS logs, offline Android logs, ``ingest --dry-run``): a
line cut off before its last field, a unit the parser does not know, or a timed block that contradicts the
summary raises an error naming the source and line. Lenient (the live Android backend, which reads the tool's
whole stdout): such lines are recorded in ``rejected`` and skipped. Either way every run reports what was read
(``timed``, ``warmup``, ``timings``, ``profile``) and, when it has no timed runs, why (``no_timed_reason``).

Several runs of the same model in one text are all returned in order; :meth:`BenchmarkLog.last_complete` picks
the last run of a model that has timed statistics, the rule the ingest paths apply.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from latency_lut.errors import LatencyLutError
from latency_lut.measure import Stats, stats_from_aggregates

# A C++ ostream number: integers, decimals, and the %g exponent form large averages take ("1.23457e+06").
NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
US_PER = {"us": 1.0, "µs": 1.0, "ms": 1e3, "s": 1e6}  # units the tools print, in microseconds
# How far two prints of the same average may differ (the tool prints 6 significant digits).
AVG_TOLERANCE = 2e-3


class OutputFormatError(LatencyLutError):
    """Benchmark output that cannot be trusted: cut off, inconsistent, or in units the parser does not know."""


class TruncatedOutputError(OutputFormatError):
    """A line of the output is cut off (a log copied or streamed only in part)."""


class UnitMismatchError(OutputFormatError):
    """Numbers in units the parser does not know, or that contradict each other by a unit factor."""


class NoTimedRunsError(OutputFormatError):
    """The output holds no timed-run statistics (the tool failed, or the text ends before them)."""


# ---- records ---------------------------------------------------------------------------------------------------
STAT_FIELDS = ("first", "curr", "min", "max", "avg", "std", "p5", "median", "p95")
_FULL = ("first", "curr", "min", "max", "avg", "std")
_TAIL = ("p5", "median", "p95")


@dataclass(frozen=True)
class RunStats:
    """One block of run statistics, in microseconds.

    ``printed`` names the fields the tool printed; the others are derived (for ``count=N curr=X(all same)``
    or ``count=1 curr=X``, min = max = avg = X and std = 0). ``line`` is the 1-based line it came from.
    """

    count: int
    avg: float
    std: float
    min: float
    max: float
    first: float | None = None
    curr: float | None = None
    p5: float | None = None
    median: float | None = None
    p95: float | None = None
    all_same: bool = False
    printed: tuple[str, ...] = ()
    line: int = 0
    text: str = ""

    @property
    def mean(self) -> float:
        return self.avg

    @property
    def percentiles_printed(self) -> bool:
        return self.median is not None and self.p5 is not None and self.p95 is not None

    def to_stats(self) -> tuple[Stats, str]:
        """These statistics in ms, and how the quantiles the tool does not print were obtained.

        The tool never prints the quartiles or p10/p90 the LUT keeps. With a printed p5/median/p95 they are
        interpolated from those (the median is the printed one, a measured value); otherwise the median is the
        average and the rest come from a normal fit to avg/std, clipped to the printed min and max.
        """
        if self.count < 1:
            raise NoTimedRunsError(f"line {self.line}: zero runs (count=0)")
        ms = 1e-3

        def scaled(v: float | None) -> float | None:
            return None if v is None else v * ms

        return stats_from_aggregates(self.count, self.avg * ms, self.std * ms, self.min * ms, self.max * ms,
                                     scaled(self.median), scaled(self.p5), scaled(self.p95),
                                     all_same=self.all_same)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    index: int | None = None  # the ":N" node index TF 2.3+ appends after the bracketed name

    @property
    def node_name(self) -> str:
        """The name without brackets and index suffix."""
        n = re.sub(r":\d+$", "", self.name) if self.index is not None else self.name
        return n[1:-1] if n.startswith("[") and n.endswith("]") else n

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class ProfileTable:
    """One op-profile table: its phase ("init" or "regular"), title, layout and rows."""

    phase: str
    title: str
    layout: str  # "tab" or "space"
    columns: list[str]
    line: int
    nodes: list[ProfileNode] = field(default_factory=list)


@dataclass(frozen=True)
class Header:
    """A ``Running benchmark for at least N iterations ...`` line: the start of the warmup or the timed block."""

    role: str  # "warmup" or "timed"
    iterations: int
    line: int
    text: str


@dataclass(frozen=True)
class Rejected:
    """A line that looks like a result but is not used as one, and why."""

    line: int
    text: str
    why: str


@dataclass
class BenchmarkRun:
    """The output of one run of the tool (one model), as far as the text holds it."""

    line: int
    format: str = "benchmark_model"  # or "litert-compiledmodel"
    params: dict[str, str] = field(default_factory=dict)
    param_lines: dict[str, int] = field(default_factory=dict)
    headers: list[Header] = field(default_factory=list)
    warmup: RunStats | None = None
    timed: RunStats | None = None
    timings: dict[str, float] = field(default_factory=dict)  # init, first, warmup_avg, inference_avg (us)
    timings_line: int = 0
    app_view: dict[str, dict[str, float]] = field(default_factory=dict)  # the iOS app's results view (ms)
    profile: list[ProfileTable] = field(default_factory=list)
    profile_timings: dict[str, RunStats] = field(default_factory=dict)  # the profiler's own, per phase
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    last_line: int = 0
    no_timed_reason: str | None = None
    _pending: list[RunStats] = field(default_factory=list, repr=False)  # stats lines before any header
    _compiled: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str | None:
        return self.params.get("Benchmark name")

    @property
    def graph(self) -> str | None:
        return self.params.get("Graph")

    @property
    def model(self) -> str | None:
        """The model the run loaded: the ``Graph:`` parameter, else the ``Loaded model`` line."""
        return self.graph or self.params.get("Loaded model")

    @property
    def threads(self) -> int | None:
        v = self.params.get("Num threads")
        return int(v) if v is not None and v.lstrip("-").isdigit() else None

    @property
    def has_results(self) -> bool:
        return bool(self.timed or self.warmup or self._pending or self.timings or self.app_view or self.headers)

    @property
    def nodes(self) -> list[ProfileNode]:
        """The per-node table of the timed runs: the Run Order table of the regular-run phase."""
        regular = [t for t in self.profile if t.phase == "regular"]
        chosen = next((t for t in regular if "run order" in t.title), regular[0] if regular else None)
        return list(chosen.nodes) if chosen else []

    def to_stats(self) -> tuple[Stats, str]:
        if self.timed is None or self.timed.count < 1:
            raise NoTimedRunsError(f"line {self.line}: {self.no_timed_reason or 'no timed runs'}")
        return self.timed.to_stats()

    def summary(self) -> dict[str, Any]:
        """What was read, for a report (``ingest --dry-run``): times in us, None where not printed."""
        t = self.timed
        return {
            "model": self.model, "benchmark_name": self.name, "format": self.format, "line": self.line,
            "count": t.count if t else None, "avg_us": t.avg if t else None,
            "std_us": t.std if t else None, "min_us": t.min if t else None, "max_us": t.max if t else None,
            "median_us": t.median if t else None, "p5_us": t.p5 if t else None, "p95_us": t.p95 if t else None,
            "printed": list(t.printed) if t else [], "stats_line": t.line if t else None,
            "stats_text": t.text if t else None, "warmup_count": self.warmup.count if self.warmup else None,
            "summary_inference_avg_us": self.timings.get("inference_avg"),
            "profile_nodes": len(self.nodes), "no_timed_runs": self.no_timed_reason, "notes": list(self.notes),
        }


@dataclass
class BenchmarkLog:
    """Everything parsed out of one text: its runs in order, and what was rejected."""

    source: str
    runs: list[BenchmarkRun]
    lines: int
    device: dict[str, Any] = field(default_factory=dict)  # from a "fbnet-lut device: {json}" line
    rejected: list[Rejected] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)  # log-viewer prefixes that were removed

    def timed_runs(self) -> list[BenchmarkRun]:
        return [r for r in self.runs if r.timed is not None and r.timed.count > 0]

    def last_complete(self) -> BenchmarkRun | None:
        """The last run with timed statistics (the rule when one text holds several runs)."""
        done = self.timed_runs()
        return done[-1] if done else None

    def why_no_timed_runs(self) -> str:
        """One sentence: why no run of this text has timed statistics."""
        if not self.runs:
            if self.rejected:
                r = self.rejected[0]
                return f"no statistics: nothing but rejected lines (line {r.line}: {r.why})"
            return ("no statistics: no parameter, statistics or summary line (not benchmark_model output, or cut "
                    "before it)")
        reasons = [f"line {r.line}: {r.no_timed_reason}" for r in self.runs if r.no_timed_reason]
        return "; ".join(reasons) or "no timed runs"


# ---- line cleaning ---------------------------------------------------------------------------------------------
_PREFIXES: list[tuple[str, re.Pattern[str]]] = [
    ("quote", re.compile(r"^[ \t]*>[ \t]?")),
    # logcat -v threadtime: "07-14 13:23:15.443 25289 25289 I tflite  : msg"
    ("logcat", re.compile(r"^\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+(?P<level>[VDIWEFA])\s+[^:]*?\s*:\s?")),
    # logcat -v time / brief: "07-14 13:23:15.443 I/tflite  (25289): msg", "I/tflite  (25289): msg"
    ("logcat", re.compile(r"^(?:\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+)?(?P<level>[VDIWEFA])/[^(:]*\(\s*\d+\)\s*:\s?")),
    # Xcode console (NSLog): "2020-10-28 14:41:14.151361+0800 TFLiteBenchmark[3921:935759] msg"
    ("nslog", re.compile(r"^\d{4}-\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+(?:[+-]\d{4})?\s+\S+\[\d+:\w+\]\s")),
    # syslog viewers (idevicesyslog, pymobiledevice3 syslog live): "... TFLiteBenchmark(...)[812] <Notice>: msg"
    ("syslog", re.compile(r"^.*?<(?:Notice|Error|Fault|Debug|Info|Default|Warning)>:\s?", re.IGNORECASE)),
    ("severity", re.compile(r"^(?P<level>INFO|WARN|WARNING|ERROR|FATAL|VERBOSE|DEBUG)\s*:\s?")),
    # the new LiteRT tool's source location: "[benchmark_litert_model.h:100] "
    ("source", re.compile(r"^\[[\w./+-]+\.(?:h|cc|cpp|c|mm):\d+\]\s?")),
]
_ERROR_LEVELS = {"E", "F", "ERROR", "FATAL"}


def clean_line(raw: str) -> tuple[str, set[str], bool]:
    """The message of one line without any log-viewer prefix; the prefixes removed; whether it is an error."""
    line = raw.rstrip("\r\n")
    found: set[str] = set()
    error = False
    changed = True
    while changed:
        changed = False
        stripped = line.lstrip(" \t")
        for kind, rx in _PREFIXES:
            m = rx.match(stripped)
            if m and m.end() > 0:
                found.add(kind)
                level = m.groupdict().get("level")
                error = error or level in _ERROR_LEVELS
                line = stripped[m.end():]
                changed = True
                break
    return line.strip(" \t"), found, error


# ---- line grammar ----------------------------------------------------------------------------------------------
_STAT = re.compile(r"^count=(?P<count>\d+)(?P<rest>.*)$")
_TOKEN = re.compile(rf"^(?P<key>[a-z]\w*)=(?P<value>{NUM})(?P<same>\(all_same\))?$")
_HEADER = re.compile(r"^Running benchmark for at least (?P<n>\d+) iterations?\b")
_PARAM = re.compile(r"^(?P<name>[A-Za-z#][\w #()/.,-]*?)\s*:\s\[(?P<value>.*)$")
_LOADED = re.compile(r"^Loaded model (?P<path>\S.*)$")
_TIMINGS = re.compile(r"^(?P<old>Average )?[Ii]nference timings in (?P<unit>\S+?):\s*(?P<body>.*)$")
_TIMING_FIELDS = {"Init": "init", "First inference": "first", "Warmup (avg)": "warmup_avg",
                  "Inference (avg)": "inference_avg", "Warmup": "warmup_avg", "Inference": "inference_avg",
                  "no stats": "inference_avg"}  # TF 1.13-2.0 label the inference average "no stats"
_NEW_TIMINGS = ("init", "first", "warmup_avg", "inference_avg")
_OLD_TIMINGS = ("warmup_avg", "init", "inference_avg")
_PROFILER_STATS = re.compile(r"^(?:Timings \((?P<unit>[^)]*)\)|Memory \(bytes\)):\s*count=")
# The new LiteRT CompiledModel tool: "Inference (avg):      7430.20 ms (10 runs)", "Inference (std): 9.92"
_COMPILED = re.compile(rf"^(?P<what>Warmup|Inference) \((?P<stat>first|avg|min|max|std|median|p5|p95)\):\s*"
                       rf"(?P<value>{NUM})?\s*(?P<unit>[^\s(]+)?\s*(?:\((?P<runs>\d+) runs?\))?\s*$")
_COMPILED_INIT = re.compile(rf"^Model initialization:\s*(?P<value>{NUM})\s*(?P<unit>\S+)\s*$")
_SIGNATURE = re.compile(r"^Signature name:\s*(?P<name>\S.*)$")
# The iOS app's results view (ResultsListener), in ms.
_STARTUP = re.compile(rf"^Startup latency:\s*(?P<value>{NUM})?\s*(?P<unit>\S*)\s*$")
_SECTION = re.compile(r"^(?P<name>Inference|Warmup):\s*$")
_ITEM = re.compile(
    rf"^-\s+(?P<name>Num runs|Average|Min|Max|Std deviation):\s*(?P<value>{NUM})?\s*(?P<unit>\S*)\s*$"
)
_ITEM_KEYS = {"Num runs": "count", "Average": "avg", "Min": "min", "Max": "max", "Std deviation": "std"}
APP_VIEW_UNIT = "ms"
# Parameters runs are matched by: a cut-off value of these must not be read as a shorter value.
KEY_PARAMS = ("Benchmark name", "Graph", "Num threads", "Min num runs", "Min warmup runs")
_DEVICE = re.compile(r"fbnet-lut device:\s*(?P<json>.*)$")
_ERROR_HINTS = ("error", "failed", "failure", "not found", "cannot", "can't", "could not", "aborted",
                "segmentation", "permission denied", "exec format", "no such file", "unrecognized", "invalid")


def parse_stat_line(line: str, n: int = 0) -> RunStats | str | None:
    """A ``count=`` line (prefixes removed): its RunStats; a string saying why it is malformed; None if not one."""
    m = _STAT.match(line)
    if m is None:
        return None
    count = int(m["count"])
    values: dict[str, float] = {}
    all_same = False
    for tok in m["rest"].replace("(all same)", "(all_same)").split():
        t = _TOKEN.match(tok)
        if t is None:
            return f"statistics line is cut off or malformed at {tok!r}"
        if t["key"] in values:
            return f"statistics line repeats {t['key']}="
        values[t["key"]] = float(t["value"])
        all_same = all_same or bool(t["same"])
    unknown = [k for k in values if k not in STAT_FIELDS]
    if unknown:
        return f"statistics line has fields this parser does not know ({', '.join(unknown)})"
    printed = tuple(k for k in STAT_FIELDS if k in values)
    tail = [k for k in _TAIL if k in values]
    if tail and len(tail) != len(_TAIL):
        return "statistics line is cut off (its p5/median/p95 tail is incomplete)"
    if count == 0:
        if values:
            return "statistics line says count=0 but prints times"
        return RunStats(0, 0.0, 0.0, 0.0, 0.0, printed=(), line=n, text=line)
    pct = {k: values[k] for k in tail}
    if all(k in values for k in _FULL):
        return RunStats(count, values["avg"], values["std"], values["min"], values["max"], first=values["first"],
                        curr=values["curr"], all_same=all_same, printed=printed, line=n, text=line, **pct)
    # "(all same)" is printed only for count > 1; a bare curr= with count > 1 is a line that lost its tail.
    if set(values) - set(_TAIL) == {"curr"} and (all_same or count == 1):
        v = values["curr"]
        return RunStats(count, v, 0.0, v, v, first=v if count == 1 else None, curr=v, all_same=all_same,
                        printed=printed, line=n, text=line, **pct)
    missing = [k for k in _FULL if k not in values]
    return f"statistics line is cut off (it lacks {', '.join(missing)})"


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= AVG_TOLERANCE * max(abs(a), abs(b), 1e-9)


def _num(text: str) -> float | None:
    try:
        return float(text.rstrip("%"))
    except ValueError:
        return None


# ---- the parser ------------------------------------------------------------------------------------------------
class _Parser:
    def __init__(self, source: str, strict: bool) -> None:
        self.source = source
        self.strict = strict
        self.runs: list[BenchmarkRun] = []
        self.cur: BenchmarkRun | None = None
        self.rejected: list[Rejected] = []
        self.device: dict[str, Any] = {}
        self.prefixes: set[str] = set()
        self.phase = "regular"
        self.title = ""
        self.section: str | None = None  # app view section
        self.table: ProfileTable | None = None
        self.last_stat_text: str | None = None

    # -- helpers
    def where(self, n: int) -> str:
        return f"{self.source}, line {n}"

    def fail(self, exc: type[OutputFormatError], n: int, why: str, text: str) -> None:
        """Strict: raise; lenient: record the line as rejected."""
        if self.strict:
            raise exc(f"{self.where(n)}: {why}: {text[:100]!r}")
        self.rejected.append(Rejected(n, text, why))

    def new_run(self, n: int) -> BenchmarkRun:
        if self.cur is not None:
            self.finish(self.cur, followed=True)
        self.cur = BenchmarkRun(line=n)
        self.runs.append(self.cur)
        self.phase, self.title, self.section, self.table, self.last_stat_text = "regular", "", None, None, None
        return self.cur

    def run(self, n: int) -> BenchmarkRun:
        return self.cur if self.cur is not None else self.new_run(n)

    # -- the loop
    def feed(self, n: int, raw: str) -> None:
        line, prefixes, error = clean_line(raw)
        self.prefixes |= prefixes
        if self.table is not None and self._table_row(n, line):
            return
        if not line:
            self.section = None
            return
        if self.cur is not None:
            self.cur.last_line = n
        dm = _DEVICE.search(line)
        if dm:
            self._device(n, dm["json"])
            return
        if line.startswith("STARTING!"):
            if self.cur is None or self.cur.has_results or self.cur.params:
                self.new_run(n)
            return
        if line.startswith("Log parameter values verbosely"):
            if self.cur is None or self.cur.has_results or self.cur.params:
                self.new_run(n)
            self._param(n, "Log parameter values verbosely", line.split("[", 1)[-1], line)
            return
        if line.startswith("count="):
            self._stat(n, line)
            return
        if _PROFILER_STATS.match(line):
            self._profiler_stats(n, line)
            return
        hm = _HEADER.match(line)
        if hm:
            self._header(n, int(hm["n"]), line)
            return
        pm = _PARAM.match(line)
        if pm:
            self._param(n, pm["name"].strip(), pm["value"], line)
            return
        lm = _LOADED.match(line)
        if lm:
            self.run(n).params.setdefault("Loaded model", lm["path"].strip())
            return
        tm = _TIMINGS.match(line)
        if tm:
            self._timings(n, tm, line)
            return
        if self._compiled(n, line):
            return
        if self._app_view(n, line):
            return
        if self._profile_line(n, line):
            return
        low = line.lower()
        if self.cur is not None and (error or line.startswith(("ERROR", "FATAL")) or
                                     any(h in low for h in _ERROR_HINTS)):
            self.cur.errors.append(line[:300])
        elif self.cur is None and (error or any(h in low for h in _ERROR_HINTS)):
            self.new_run(n).errors.append(line[:300])

    def _device(self, n: int, text: str) -> None:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            raise TruncatedOutputError(f"{self.where(n)}: the 'fbnet-lut device:' line is cut off or not JSON") \
                from None
        if not isinstance(doc, dict):
            raise TruncatedOutputError(f"{self.where(n)}: the 'fbnet-lut device:' line does not hold a JSON object")
        self.device.update({str(k): v for k, v in doc.items()})

    def _param(self, n: int, name: str, value: str, line: str) -> None:
        if not value.endswith("]"):
            if name in KEY_PARAMS:
                self.fail(TruncatedOutputError, n, "parameter line is cut off", line)
            return  # some other program's "x: [..." line in a syslog stream
        cur = self.cur
        # A parameter after results, or a second name or graph, means the next model's output started.
        if cur is None or cur.has_results or (name in ("Benchmark name", "Graph") and name in cur.params):
            cur = self.new_run(n)
        cur.params[name] = value[:-1]
        cur.param_lines[name] = n
        self.section = None

    def _header(self, n: int, iterations: int, line: str) -> None:
        cur = self.run(n)
        if len(cur.headers) >= 2 or cur.timings:
            cur = self.new_run(n)  # a third block: another run whose parameters were not printed
            cur.notes.append(f"line {n}: a new run without its parameter lines")
        role = "warmup" if not cur.headers else "timed"
        if not cur.headers:
            # A text that starts at the timed block (a paste): the printed parameters say which block this is.
            warm, runs = cur.params.get("Min warmup runs"), cur.params.get("Min num runs")
            if runs is not None and warm is not None and runs != warm and str(iterations) == runs and \
                    (cur._pending or cur.warmup):
                role = "timed"
        if role == "timed" and cur.warmup is None and cur._pending:
            cur.warmup = cur._pending.pop()
        cur.headers.append(Header(role, iterations, n, line))
        self.last_stat_text = None

    def _stat(self, n: int, line: str) -> None:
        parsed = parse_stat_line(line, n)
        if parsed is None:  # "count=" with no number after it: a line cut off or garbled
            parsed = "its count= has no number"
        if isinstance(parsed, str):
            self.fail(TruncatedOutputError, n, parsed, line)
            return
        cur = self.run(n)
        if line == self.last_stat_text:  # the iOS console prints some messages twice (NSLog and stdout)
            self.rejected.append(Rejected(n, line, "the same statistics line printed twice (an echo)"))
            return
        self.last_stat_text = line
        if not cur.headers:
            cur._pending.append(parsed)
            return
        h = cur.headers[-1]
        slot = "warmup" if h.role == "warmup" else "timed"
        if getattr(cur, slot) is not None:
            self.rejected.append(Rejected(n, line, f"a second statistics line after the {slot} header of line "
                                                   f"{h.line}; the first one is kept"))
            return
        setattr(cur, slot, parsed)

    def _profiler_stats(self, n: int, line: str) -> None:
        why = "the op profiler's own summary, not the run statistics"
        if line.startswith("Timings"):
            parsed = parse_stat_line(line.split(":", 1)[1].strip(), n)
            if isinstance(parsed, RunStats) and self.cur is not None:
                self.cur.profile_timings[self.phase] = parsed
        self.rejected.append(Rejected(n, line, why))
        self.table = None

    def _timings(self, n: int, m: re.Match[str], line: str) -> None:
        cur = self.run(n)
        unit = m["unit"]
        if unit != "us":
            self.fail(UnitMismatchError, n, f"timings are in {unit!r}, but benchmark_model reports microseconds "
                      "('in us'); the log was edited or comes from another tool", line)
            return
        found: dict[str, float] = {}
        for part in m["body"].split(","):
            if not part.strip():
                continue
            label, sep, value = part.partition(":")
            if not sep or not re.fullmatch(NUM, value.strip()):
                self.fail(TruncatedOutputError, n, "timings line is cut off or malformed", line)
                return
            # A label this parser does not know (a newer build) is kept under its own name.
            found[_TIMING_FIELDS.get(label.strip(), label.strip())] = float(value.strip())
        needed = _OLD_TIMINGS if m["old"] else _NEW_TIMINGS
        lacks = [k for k in needed if k not in found]
        if lacks:
            self.fail(TruncatedOutputError, n, f"timings line is cut off (it lacks {', '.join(lacks)})", line)
            return
        cur.timings, cur.timings_line = found, n

    def _compiled(self, n: int, line: str) -> bool:
        sm = _SIGNATURE.match(line)
        if sm:
            cur = self.run(n)
            if cur._compiled.get("inference"):
                params = dict(cur.params)
                cur = self.new_run(n)
                cur.params.update({k: v for k, v in params.items() if k != "Signature name"})
            cur.params["Signature name"] = sm["name"].strip()
            cur.param_lines["Signature name"] = n
            cur.format = "litert-compiledmodel"
            return True
        im = _COMPILED_INIT.match(line)
        if im:
            cur = self.run(n)
            cur.format = "litert-compiledmodel"
            us = self._to_us(n, float(im["value"]), im["unit"], line)
            if us is not None:
                cur.timings["init"] = us
            return True
        cm = _COMPILED.match(line)
        if cm is None:
            return False
        cur = self.run(n)
        cur.format = "litert-compiledmodel"
        if cm["value"] is None:
            self.fail(TruncatedOutputError, n, "results line is cut off", line)
            return True
        what = cm["what"].lower()
        block = cur._compiled.setdefault(what, {"lines": {}})
        unit = cm["unit"]
        if unit is None:
            # The tool prints std without a unit; it is in the unit of the average it belongs to.
            unit = block.get("unit")
            if unit is None:
                self.fail(UnitMismatchError, n, "a value without a unit", line)
                return True
            cur.notes.append(f"line {n}: {cm['what']} ({cm['stat']}) has no unit; read as {unit}, the average's")
        us = self._to_us(n, float(cm["value"]), unit, line)
        if us is None:
            return True
        block.setdefault("unit", unit)
        block[cm["stat"]] = us
        block["lines"][cm["stat"]] = (n, line)
        if cm["runs"]:
            block["count"] = int(cm["runs"])
        return True

    def _to_us(self, n: int, value: float, unit: str, line: str) -> float | None:
        scale = US_PER.get(unit)
        if scale is None:
            self.fail(UnitMismatchError, n, f"unit {unit!r} is not one this parser knows "
                      f"({', '.join(US_PER)})", line)
            return None
        return value * scale

    def _app_view(self, n: int, line: str) -> bool:
        sm = _STARTUP.match(line)
        if sm:
            cur = self.run(n)
            v = self._view_value(n, sm, line)
            if v is not None:
                cur.app_view["startup"] = {"latency": v}
            return True
        sec = _SECTION.match(line)
        if sec:
            self.section = sec["name"].lower()
            if self.cur is not None:
                self.cur.app_view.setdefault(self.section, {})
            return True
        im = _ITEM.match(line)
        if im and self.section and self.cur is not None:
            key = _ITEM_KEYS[im["name"]]
            if key == "count":
                if im["value"] is None or im["unit"]:
                    self.fail(TruncatedOutputError, n, "results line is cut off", line)
                    return True
                self.cur.app_view[self.section][key] = float(im["value"])
            else:
                v = self._view_value(n, im, line)
                if v is not None:
                    self.cur.app_view[self.section][key] = v
            return True
        return False

    def _view_value(self, n: int, m: re.Match[str], line: str) -> float | None:
        if m["value"] is None:
            self.fail(TruncatedOutputError, n, "results line is cut off", line)
            return None
        if m["unit"] != APP_VIEW_UNIT:
            if not m["unit"] and line.endswith(m["value"]):
                self.fail(TruncatedOutputError, n, "results line is cut off before its unit", line)
            else:
                self.fail(UnitMismatchError, n, f"the app's results view reports milliseconds, this line has "
                          f"{m['unit'] or 'no unit'!r}", line)
            return None
        return float(m["value"])

    # -- op-profile tables
    def _profile_line(self, n: int, line: str) -> bool:
        low = line.lower()
        if "profiling info for" in low:
            self.phase = "init" if "initialization" in low else "regular"
            return True
        if line.startswith("=") and line.endswith("="):
            self.title = line.strip("= ").lower()
            return True
        if "[node type]" in low and "[name]" in low:
            cols = [c.strip().lower() for c in re.findall(r"\[([^\]]+)\]", line)]
            self.table = ProfileTable(self.phase, self.title, "tab" if "\t" in line else "space", cols, n)
            self.run(n).profile.append(self.table)
            return True
        return False

    def _table_row(self, n: int, line: str) -> bool:
        t = self.table
        assert t is not None
        if not line or line.startswith("="):
            self.table = None
            return False
        node = _parse_row(t, line)
        if node is None:
            self.table = None
            return False
        t.nodes.append(node)
        return True

    # -- the end of a run
    def finish(self, r: BenchmarkRun, followed: bool) -> None:
        """Settle a run at its end; ``followed``: another run starts after it (else the text ends)."""
        self._finish_compiled(r)
        if r._pending:
            self._assign_pending(r)
        self._check(r)
        r.no_timed_reason = None if r.timed is not None and r.timed.count > 0 else self._why(r, followed)

    def _finish_compiled(self, r: BenchmarkRun) -> None:
        for what, block in r._compiled.items():
            if "avg" not in block:
                continue
            n, text = block["lines"]["avg"]
            count = block.get("count")
            if count is None:
                self.fail(TruncatedOutputError, n, "the average does not say over how many runs", text)
                continue
            lo, hi = block.get("min", block["avg"]), block.get("max", block["avg"])
            stat = RunStats(count, block["avg"], block.get("std", 0.0), lo, hi, first=block.get("first"),
                            median=block.get("median"), p5=block.get("p5"), p95=block.get("p95"),
                            all_same=count > 1 and lo == hi,
                            printed=tuple(k for k in ("first", "min", "max", "avg", "std", "p5", "median", "p95")
                                          if k in block), line=n, text=text)
            if what == "inference":
                r.timed = stat
                r.timings["inference_avg"] = block["avg"]
            else:
                r.warmup = stat
                r.timings["warmup_avg"] = block["avg"]
        r._compiled.clear()

    def _assign_pending(self, r: BenchmarkRun) -> None:
        """Statistics lines without headers (an edited or partial paste): by the summary, else by position."""
        pend, r._pending = r._pending, []
        inf, warm = r.timings.get("inference_avg"), r.timings.get("warmup_avg")
        for extra in pend[:-2]:
            self.rejected.append(Rejected(extra.line, extra.text, "a statistics line without a header, before the "
                                                                  "warmup and timed ones"))
        if len(pend) >= 2:
            r.warmup, r.timed = pend[-2], pend[-1]
            r.notes.append(f"lines {pend[-2].line}, {pend[-1].line}: no 'Running benchmark' headers; the first "
                           "statistics line is taken as the warmup, the second as the timed runs")
            return
        only = pend[0]
        if inf is not None and _close(only.avg, inf) and not (warm is not None and _close(only.avg, warm)):
            r.timed = only
            r.notes.append(f"line {only.line}: no header; the summary's 'Inference (avg)' says these are the "
                           "timed runs")
        elif warm is not None and _close(only.avg, warm):
            r.warmup = only
        elif self.strict:
            self.rejected.append(Rejected(only.line, only.text, "no 'Running benchmark' header says whether this "
                                                                "is the warmup or the timed runs"))
        else:
            r.timed = only
            r.notes.append(f"line {only.line}: no header; the only statistics line is taken as the timed runs")

    def _check(self, r: BenchmarkRun) -> None:
        """Figures the tool prints twice must agree; a factor of 1000 between them is a unit error."""
        t = r.timed
        pairs: list[tuple[float, float, str, int]] = []
        if t is not None and t.count and "inference_avg" in r.timings and r.format == "benchmark_model":
            pairs.append((t.avg, r.timings["inference_avg"], "the summary's 'Inference (avg)' (us)", r.timings_line))
        view = r.app_view.get("inference", {})
        if t is not None and t.count and "avg" in view:
            pairs.append((t.avg, view["avg"] * 1e3, "the results view's 'Average' (ms)", t.line))
        for stat_avg, other, what, line in pairs:
            if _close(stat_avg, other):
                continue
            ratio = max(stat_avg, other) / max(min(stat_avg, other), 1e-12)
            msg = f"timed-run avg={stat_avg:g} us but {what} gives {other:g} us"
            if self.strict:
                if 300 <= ratio <= 3000:
                    raise UnitMismatchError(f"{self.where(line)}: units do not match: {msg}")
                raise OutputFormatError(f"{self.where(line)}: the log contradicts itself ({msg}); it was edited or "
                                        "lines of two runs are interleaved")
            r.notes.append(f"line {line}: {msg}")
        w = r.warmup
        if w is not None and w.count and "warmup_avg" in r.timings and not _close(w.avg, r.timings["warmup_avg"]):
            r.notes.append(f"line {w.line}: warmup avg={w.avg:g} us but the summary's 'Warmup (avg)' gives "
                           f"{r.timings['warmup_avg']:g} us")
        for h in r.headers:
            want = r.params.get("Min warmup runs" if h.role == "warmup" else "Min num runs")
            if want is not None and want.isdigit() and int(want) != h.iterations:
                r.notes.append(f"line {h.line}: the {h.role} header says {h.iterations} iterations, the parameters "
                               f"{want}")

    def _why(self, r: BenchmarkRun, followed: bool) -> str:
        timed_header = next((h for h in r.headers if h.role == "timed"), None)
        failed = f" (the tool said: {' | '.join(r.errors[-2:])})" if r.errors else ""
        if r.timed is not None:  # count=0
            return f"zero timed runs (count=0 at line {r.timed.line}){failed}"
        if timed_header is not None:
            ended = "the next run starts" if followed else "the text ends"
            return (f"cut off: the timed runs started at line {timed_header.line} ({timed_header.text[:60]!r}) "
                    f"but {ended} before their statistics{failed}")
        if r.warmup is not None:
            return (f"warmup only: the text ends after the warmup block (statistics at line {r.warmup.line}, "
                    f"count={r.warmup.count}); the timed runs are not in it{failed}")
        if r.headers:
            return f"cut off: the warmup started at line {r.headers[0].line} but the text ends there{failed}"
        if "inference_avg" in r.timings:
            return (f"no statistics: only the summary line's average ({r.timings['inference_avg']:g} us, line "
                    f"{r.timings_line}); no 'count=' line gives the number of runs and their spread{failed}")
        return f"no statistics: the text ends before the first 'Running benchmark' block{failed}"


def _parse_row(t: ProfileTable, line: str) -> ProfileNode | None:
    """One table row; None if the line is not one (the table ended)."""
    ncols = len(t.columns)
    if "\t" in line:
        cells = [c.strip() for c in line.split("\t") if c.strip()]
        if len(cells) == ncols - 1 and t.columns[-1] == "name":
            cells.append("")
    else:
        # Space aligned: the node type comes first and the name last, both may hold spaces; the cells between
        # are numbers.
        k = ncols - 2
        m = re.match(rf"^(?P<type>\S.*?)\s+(?P<nums>(?:{NUM}%?\s+){{{k}}})(?P<name>.*)$", line)
        if m is None:
            return None
        cells = [m["type"], *m["nums"].split(), m["name"].strip()]
    if len(cells) != ncols:
        return None
    rec = dict(zip(t.columns, cells))
    avg = _num(rec.get("avg ms", ""))
    if avg is None:
        return None
    times = _num(rec.get("times called", ""))
    name = rec.get("name", "")
    idx = re.search(r"\]:(\d+)$", name)
    return ProfileNode(
        node_type=rec.get("node type", ""), name=name, avg_ms=avg, first_ms=_num(rec.get("first", "")),
        start_ms=_num(rec["start"]) if "start" in rec else None, percent=_num(rec.get("%", "")),
        mem_kb=_num(rec.get("mem kb", "")), times_called=int(times) if times is not None else None,
        index=int(idx[1]) if idx else None,
    )


def parse(text: str, source: str = "<output>", *, strict: bool = True) -> BenchmarkLog:
    """Parse a text of benchmark_model / iOS-app output (any number of runs, any log-viewer prefix)."""
    p = _Parser(source, strict)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for n, raw in enumerate(lines, start=1):
        p.feed(n, raw)
    if p.cur is not None:
        p.finish(p.cur, followed=False)
    runs = [r for r in p.runs if r.has_results or r.params or r.errors]
    return BenchmarkLog(source, runs, len(lines), p.device, p.rejected, sorted(p.prefixes))


def parse_one(text: str, source: str = "<output>", *, strict: bool = False) -> BenchmarkRun:
    """The run of a text that holds one run of the tool (the live backends' stdout); its last complete one
    if it holds several, else its last run (whose ``no_timed_reason`` says what went wrong)."""
    log = parse(text, source, strict=strict)
    run = log.last_complete() or (log.runs[-1] if log.runs else None)
    if run is None:
        run = BenchmarkRun(line=1, no_timed_reason=log.why_no_timed_runs())
    return run


__all__ = ["BenchmarkLog", "BenchmarkRun", "Header", "NoTimedRunsError", "OutputFormatError", "ProfileNode",
           "ProfileTable", "Rejected", "RunStats", "TruncatedOutputError", "UnitMismatchError", "clean_line",
           "parse", "parse_one", "parse_stat_line"]
