"""Parser of what the TFLite iOS benchmark app prints: the ``benchmark_model`` log, per model.

The app links the benchmark library and runs it with the flags of a ``benchmark_params.json``; the library logs
(on stdout, each line prefixed ``INFO:``; seen in Xcode's console, in the process output that instruments
forwards, or in the syslog when the app relays it) the parameters it was given, then one ``count=`` statistics
line for the warmup runs and one for the timed runs (microseconds), then a one-line summary. The app's own
results view adds a short ``Startup latency / Inference: / - Average: X ms`` text. All of these are read here::

    INFO: Log parameter values verbosely: [0]          <- a new model starts
    INFO: Num threads: [1]
    INFO: Benchmark name: [fbnet-lut/<bundle id>/<op key>]   <- our per-model separator (see bundle.py)
    INFO: Graph: [/var/containers/.../<op key>.tflite]
    INFO: count=5 first=812 curr=640 min=631 max=812 avg=671.4 std=69        <- warmup
    INFO: count=50 first=644 curr=633 min=629 max=702 avg=640.1 std=12       <- timed runs
    INFO: Inference timings in us: Init: 2310, First inference: 812, Warmup (avg): 671.4, Inference (avg): 640.1

Variants handled: ``count=N curr=X(all same)``; a ``p5= median= p95=`` tail; the older
``Average inference timings in us: Warmup: .., Init: .., Inference: ..``; any prefix a log viewer adds before
the message (a syslog ``... <Notice>:`` header, a timestamp).

The parser checks what can be checked: a line cut off before its last field is a :class:`TruncatedLogError`; a
summary in other units than microseconds, or a timed-run average that disagrees with the summary's by a unit
factor, is a :class:`UnitMismatchError`. It does not map blocks to keys; :mod:`.results` does, against a manifest.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from latency_lut.ios.errors import ResultsFormatError, TruncatedLogError, UnitMismatchError

# A C++ ostream number: integers, decimals, and the %g exponent form large averages take ("1.23457e+06").
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
# The header a syslog viewer (idevicesyslog, pymobiledevice3 syslog live) puts before the message.
_SYSLOG_PREFIX = re.compile(r"^.*?<(?:Notice|Error|Fault|Debug|Info|Default|Warning)>:\s?", re.IGNORECASE)
_SEVERITY = re.compile(r"^(?:INFO|WARN|WARNING|ERROR|FATAL|VERBOSE):\s?")

_PARAM = re.compile(r"^(?P<name>[A-Za-z#][\w #()/-]*?):\s\[(?P<value>.*)$")
_COUNT = re.compile(r"\bcount=(?P<count>\d+)(?P<rest>.*)$")
_FULL_STAT = re.compile(
    rf"^\s+first=(?P<first>{_NUM})\s+curr=(?P<curr>{_NUM})\s+min=(?P<min>{_NUM})\s+max=(?P<max>{_NUM})"
    rf"\s+avg=(?P<avg>{_NUM})\s+std=(?P<std>{_NUM})(?P<tail>.*)$"
)
_SAME_STAT = re.compile(rf"^\s+curr=(?P<curr>{_NUM})(?P<same>\(all same\))?\s*$")
_TAIL = re.compile(rf"^\s+p5=(?P<p5>{_NUM})\s+median=(?P<median>{_NUM})\s+p95=(?P<p95>{_NUM})\s*$")
_TIMINGS = re.compile(r"(?P<old>Average )?[Ii]nference timings in (?P<unit>\S+?):\s*(?P<body>.*)$")
_TIMING_FIELDS = {"Init": "init", "First inference": "first", "Warmup (avg)": "warmup_avg",
                  "Inference (avg)": "inference_avg", "Warmup": "warmup_avg", "Inference": "inference_avg"}
_NEW_TIMINGS = ("init", "first", "warmup_avg", "inference_avg")
_OLD_TIMINGS = ("warmup_avg", "init", "inference_avg")
_STARTUP = re.compile(rf"^Startup latency:\s*(?P<value>{_NUM})?\s*(?P<unit>\S*)\s*$")
_SECTION = re.compile(r"^(?P<name>Inference|Warmup):\s*$")
_ITEM = re.compile(
    rf"^\s*-\s+(?P<name>Num runs|Average|Min|Max|Std deviation):\s*(?P<value>{_NUM})?\s*(?P<unit>\S*)\s*$"
)
_ITEM_KEYS = {"Num runs": "count", "Average": "avg", "Min": "min", "Max": "max", "Std deviation": "std"}
# Parameters the results are matched by: a cut-off value of these must not be read as a shorter value.
_KEY_PARAMS = ("Benchmark name", "Graph", "Num threads", "Min num runs", "Min warmup runs")
_DEVICE = re.compile(r"fbnet-lut device:\s*(?P<json>.*)$")

# Numbers in the app's results view are milliseconds; benchmark_model's are microseconds.
APP_VIEW_UNIT = "ms"
LOG_UNIT = "us"
# How far the timed-run average may differ from the summary line's (both print 6 significant digits).
_AVG_TOLERANCE = 2e-3


@dataclass(frozen=True)
class RunStat:
    """One ``count=`` line: a tensorflow ``Stat`` of run times in microseconds."""

    count: int
    first: float | None
    curr: float
    min: float
    max: float
    avg: float
    std: float
    line: int
    p5: float | None = None
    median: float | None = None
    p95: float | None = None


@dataclass
class LogBlock:
    """The output of one benchmark run (one model), as far as the log holds it."""

    line: int
    params: dict[str, str] = field(default_factory=dict)
    param_lines: dict[str, int] = field(default_factory=dict)
    stats: list[RunStat] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    timings_line: int = 0
    app_view: dict[str, dict[str, float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def name(self) -> str | None:
        return self.params.get("Benchmark name")

    @property
    def graph(self) -> str | None:
        return self.params.get("Graph")

    @property
    def threads(self) -> int | None:
        v = self.params.get("Num threads")
        return int(v) if v is not None and v.lstrip("-").isdigit() else None

    @property
    def warmup(self) -> RunStat | None:
        return self.stats[0] if len(self.stats) >= 2 else None

    @property
    def inference(self) -> RunStat | None:
        """The timed runs: the second ``count=`` line (the first is the warmup)."""
        return self.stats[1] if len(self.stats) >= 2 else None

    @property
    def has_results(self) -> bool:
        return bool(self.stats or self.timings or self.app_view)


@dataclass
class ParsedLog:
    source: str
    blocks: list[LogBlock]
    device: dict[str, Any]
    lines: int


def clean_line(raw: str) -> str:
    """The message of one log line, without a syslog header or the ``INFO:`` severity tag."""
    line = raw.rstrip("\r\n")
    m = _SYSLOG_PREFIX.match(line)
    if m:
        line = line[m.end():]
    return _SEVERITY.sub("", line.strip(), count=1)


def _num(s: str) -> float:
    return float(s)


def parse_log(text: str, source: str = "<log>") -> ParsedLog:
    """Split a console log into per-model blocks; raise on truncated lines and unit mismatches."""
    blocks: list[LogBlock] = []
    device: dict[str, Any] = {}
    cur: LogBlock | None = None
    section: str | None = None
    lines = text.splitlines()

    def where(n: int) -> str:
        return f"{source}, line {n}"

    def new_block(n: int) -> LogBlock:
        b = LogBlock(line=n)
        blocks.append(b)
        return b

    for n, raw in enumerate(lines, start=1):
        line = clean_line(raw)
        if not line:
            continue
        dm = _DEVICE.search(line)
        if dm:
            device.update(_device_json(dm["json"], where(n)))
            continue
        if line.startswith("Log parameter values verbosely"):
            cur, section = new_block(n), None
            continue
        pm = _PARAM.match(line)
        if pm:
            name, value = pm["name"].strip(), pm["value"]
            if not value.endswith("]"):
                if name in _KEY_PARAMS:
                    raise TruncatedLogError(f"{where(n)}: parameter line is cut off: {line[:80]!r}")
                continue  # some other program's "x: [..." line in a syslog stream
            # A parameter after results, or a second name, means the next model's output started.
            if cur is None or cur.has_results or (name == "Benchmark name" and cur.name is not None):
                cur = new_block(n)
            cur.params[name] = value[:-1]
            cur.param_lines[name] = n
            section = None
            continue
        cm = _COUNT.search(line)
        if cm:
            cur = cur or new_block(n)
            cur.stats.append(_parse_stat(int(cm["count"]), cm["rest"], n, where(n), line))
            continue
        tm = _TIMINGS.search(line)
        if tm:
            cur = cur or new_block(n)
            cur.timings = _parse_timings(tm, where(n), line)
            cur.timings_line = n
            continue
        sm = _STARTUP.match(line)
        if sm:
            cur = cur or new_block(n)
            cur.app_view["startup"] = {"latency": _view_value(sm, where(n), line)}
            continue
        sec = _SECTION.match(line)
        if sec:
            section = sec["name"].lower()
            if cur is not None:
                cur.app_view.setdefault(section, {})
            continue
        im = _ITEM.match(line)
        if im and section and cur is not None:
            key = _ITEM_KEYS[im["name"]]
            if key == "count":
                if im["value"] is None or im["unit"]:
                    raise TruncatedLogError(f"{where(n)}: results line is cut off: {line[:80]!r}")
                cur.app_view[section][key] = float(im["value"])
            else:
                cur.app_view[section][key] = _view_value(im, where(n), line)
            continue
        if line.startswith(("ERROR", "FATAL")) or raw.lstrip().startswith(("ERROR:", "FATAL:")) or \
                "Failed" in line or "failed" in line:
            if cur is not None:
                cur.errors.append(line[:200])
    for b in blocks:
        _cross_check(b, source)
    return ParsedLog(source, blocks, device, len(lines))


def _device_json(s: str, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(s)
    except json.JSONDecodeError:
        raise TruncatedLogError(f"{where}: the 'fbnet-lut device:' line is cut off or not JSON") from None
    if not isinstance(doc, dict):
        raise TruncatedLogError(f"{where}: the 'fbnet-lut device:' line does not hold a JSON object")
    return {str(k): v for k, v in doc.items()}


def _parse_stat(count: int, rest: str, n: int, where: str, line: str) -> RunStat:
    if count == 0 and not rest.strip():
        return RunStat(0, None, 0.0, 0.0, 0.0, 0.0, 0.0, n)
    m = _FULL_STAT.match(rest)
    if m:
        tail = m["tail"]
        extra: dict[str, float] = {}
        if tail.strip():
            t = _TAIL.match(tail)
            if not t:
                raise TruncatedLogError(f"{where}: statistics line is cut off or malformed: {line[:100]!r}")
            extra = {k: _num(t[k]) for k in ("p5", "median", "p95")}
        return RunStat(count, _num(m["first"]), _num(m["curr"]), _num(m["min"]), _num(m["max"]), _num(m["avg"]),
                       _num(m["std"]), n, **extra)
    s = _SAME_STAT.match(rest)
    # "(all same)" is printed only for count > 1; a bare curr= with count > 1 is a line that lost its tail.
    if s and (s["same"] or count == 1):
        v = _num(s["curr"])
        return RunStat(count, v, v, v, v, v, 0.0, n)
    raise TruncatedLogError(f"{where}: statistics line is cut off: {line[:100]!r}")


def _parse_timings(m: re.Match[str], where: str, line: str) -> dict[str, float]:
    if m["unit"] != LOG_UNIT:
        raise UnitMismatchError(
            f"{where}: timings are in {m['unit']!r}, but benchmark_model reports microseconds ('in us'); "
            "the log was edited or comes from another tool"
        )
    found: dict[str, float] = {}
    for part in m["body"].split(","):
        if not part.strip():
            continue
        label, sep, value = part.partition(":")
        key = _TIMING_FIELDS.get(label.strip())
        if key is None or not sep or not re.fullmatch(_NUM, value.strip()):
            raise TruncatedLogError(f"{where}: timings line is cut off or malformed: {line[:100]!r}")
        found[key] = _num(value.strip())
    needed = _OLD_TIMINGS if m["old"] else _NEW_TIMINGS
    if any(k not in found for k in needed):
        lacks = ", ".join(k for k in needed if k not in found)
        raise TruncatedLogError(f"{where}: timings line is cut off (it lacks {lacks})")
    return found


def _view_value(m: re.Match[str], where: str, line: str) -> float:
    if m["value"] is None:
        raise TruncatedLogError(f"{where}: results line is cut off: {line[:80]!r}")
    if m["unit"] != APP_VIEW_UNIT:
        got = m["unit"] or "no unit"
        if not m["unit"] and line.endswith(m["value"]):
            raise TruncatedLogError(f"{where}: results line is cut off before its unit: {line[:80]!r}")
        raise UnitMismatchError(f"{where}: the app's results view reports milliseconds, this line has {got!r}: "
                                f"{line[:80]!r}")
    return _num(m["value"])


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= _AVG_TOLERANCE * max(abs(a), abs(b), 1e-9)


def _cross_check(b: LogBlock, source: str) -> None:
    """Figures that the tool prints twice must agree; a factor of 1000 between them is a unit error."""
    inf = b.inference
    pairs: list[tuple[float, float, str, int]] = []
    if inf is not None and inf.count and "inference_avg" in b.timings:
        pairs.append((inf.avg, b.timings["inference_avg"], "summary 'Inference (avg)' (us)", b.timings_line))
    view = b.app_view.get("inference", {})
    if inf is not None and inf.count and "avg" in view:
        pairs.append((inf.avg, view["avg"] * 1e3, "results view 'Average' (ms)", inf.line))
    for stat_avg, other, what, line in pairs:
        if not _close(stat_avg, other):
            ratio = max(stat_avg, other) / max(min(stat_avg, other), 1e-12)
            msg = f"timed-run avg={stat_avg:g} us but {what} gives {other:g} us"
            if 300 <= ratio <= 3000:
                raise UnitMismatchError(f"{source}, line {line}: units do not match: {msg}")
            raise ResultsFormatError(f"{source}, line {line}: the log contradicts itself ({msg}); it was edited "
                                     "or lines of two runs are interleaved")
