"""Results of a bundle, from any of its forms: the app's console log, a JSON file, a CSV file.

Each form becomes a list of :class:`Result` (one per op key, statistics in milliseconds) plus what could not be
used: blocks of other benchmarks, keys the bundle does not have, models that started but gave no numbers. A form
that names another bundle, is cut off, or is in the wrong units raises before anything is stored.

JSON form::

    {"format": "fbnet-lut-ios-results", "bundle_id": "<id>", "unit": "us" | "ms",
     "device": {"product_type": "iPhone10,3", "ios_version": "16.7.10", ...},        (optional)
     "results": [{"key": "<op key>", "count": 50, "avg": 640.1, "std": 12.0, "min": 629, "max": 702,
                  "median": 638 (optional), "samples": [...] (optional, per-run times)}]}

CSV form: a header ``bundle_id,key,unit,count,avg,std,min,max`` (``median`` optional), one row per key.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from latency_lut.backends.ios.bundle import Manifest, split_benchmark_name
from latency_lut.backends.ios.errors import (
    BundleMismatchError,
    ResultsFormatError,
    TruncatedLogError,
    UnitMismatchError,
)
from latency_lut.backends.tflite_benchmark import BenchmarkLog, BenchmarkRun, parse
from latency_lut.measure import Stats, compute_stats, stats_from_aggregates

RESULTS_FORMAT = "fbnet-lut-ios-results"
UNITS = {"us": 1e-3, "ms": 1.0}
CSV_COLUMNS = ("bundle_id", "key", "unit", "count", "avg", "std", "min", "max")


@dataclass(frozen=True)
class Result:
    """One key's measurement from the phone, in milliseconds."""

    key: str
    bundle_id: str
    stats: Stats
    samples_ms: tuple[float, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def digest(self) -> str:
        """Identity of the measurement itself (not of the file it came in), to recognise it when ingested again."""
        core = {"bundle": self.bundle_id, "key": self.key, "stats": {k: round(v, 6) for k, v in
                                                                      self.stats.to_dict().items()},
                "samples": [round(x, 6) for x in self.samples_ms]}
        return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:20]


@dataclass
class Parsed:
    """Everything read from one results source."""

    source: str
    form: str  # "log", "json" or "csv"
    bundle_ids: set[str]
    results: list[Result]
    device: dict[str, Any]
    unknown: list[str] = field(default_factory=list)  # keys (or names) the bundle does not have
    failed: dict[str, str] = field(default_factory=dict)  # key -> why there is no number
    repeated: list[str] = field(default_factory=list)  # keys measured twice in this source (the last one is kept)




# ---- the console log ---------------------------------------------------------------------------------------
def results_from_log(log: BenchmarkLog, manifest: Manifest | None) -> Parsed:
    """Map a parsed log's runs to the bundle's keys (a key run twice: its last complete run is kept)."""
    out = Parsed(log.source, "log", set(), [], dict(log.device))
    by_key = manifest.by_key() if manifest else {}
    seen: dict[str, int] = {}
    for b in log.runs:
        ident = split_benchmark_name(b.name) if b.name is not None else None
        if ident is None:
            if b.has_results:  # the app's default model, or a run without our parameters
                out.unknown.append(f"{b.name or b.graph or 'unnamed run'} (line {b.line})")
            continue
        bundle_id, key = ident
        out.bundle_ids.add(bundle_id)
        if manifest is not None and bundle_id != manifest.bundle_id:
            raise BundleMismatchError(
                f"{log.source}, line {b.param_lines.get('Benchmark name', b.line)}: this log is from bundle "
                f"{bundle_id}, not from bundle {manifest.bundle_id} ({manifest.path}); ingest it with that bundle's "
                "folder, or omit --bundle to find it"
            )
        if manifest is not None and key not in by_key:
            out.unknown.append(key)
            continue
        if manifest is not None:
            _check_block(b, key, manifest, log.source)
        if b.timed is None or b.timed.count == 0:
            if key not in seen:
                out.failed[key] = f"line {b.line}: {b.no_timed_reason or 'no timed runs'}"
            continue
        if key in seen:
            out.repeated.append(key)
            out.results = [r for r in out.results if r.key != key]
        seen[key] = b.line
        out.failed.pop(key, None)
        out.results.append(_log_result(b, key, bundle_id))
    return out


def _check_block(b: BenchmarkRun, key: str, manifest: Manifest, source: str) -> None:
    expected = manifest.by_key()[key].graph
    graph = b.graph.replace("\\", "/").rsplit("/", 1)[-1] if b.graph else None
    if graph is not None and graph != expected:
        raise ResultsFormatError(f"{source}, line {b.param_lines['Graph']}: the run named {key} loaded {graph}, "
                                 f"but the bundle's model for it is {expected}; the parameters were edited")
    if b.threads is not None and b.threads != manifest.threads:
        raise ResultsFormatError(
            f"{source}, line {b.param_lines['Num threads']}: {key} ran with {b.threads} thread(s), the bundle "
            f"asks for {manifest.threads}; these results belong to another configuration"
        )


def _log_result(b: BenchmarkRun, key: str, bundle_id: str) -> Result:
    ms = UNITS["us"]
    inf = b.timed
    assert inf is not None
    stats, how = inf.to_stats()
    extra: dict[str, Any] = {"source": "ios-log", "percentiles": how, "printed": list(inf.printed),
                             "log_line": inf.line, "first_ms": None if inf.first is None else inf.first * ms}
    if b.timings:
        extra.update({f"{k}_ms": v * ms for k, v in b.timings.items() if k != "inference_avg"})
    if b.warmup is not None:
        extra["warmup_count"] = b.warmup.count
    return Result(key, bundle_id, stats, (), extra)


# ---- JSON and CSV -------------------------------------------------------------------------------------------
def _row_result(row: Mapping[str, Any], bundle_id: str, unit: str, where: str) -> Result:
    scale = UNITS[unit]
    key = str(row.get("key") or "").strip()
    if not key:
        raise ResultsFormatError(f"{where}: a result has no 'key'")
    samples = row.get("samples")
    if samples:
        if not isinstance(samples, list) or not all(_is_num(x) for x in samples):
            raise ResultsFormatError(f"{where}: 'samples' of {key} must be a list of numbers")
        xs = [float(x) * scale for x in samples]
        if any(x < 0 or not math.isfinite(x) for x in xs):
            raise ResultsFormatError(f"{where}: 'samples' of {key} hold a negative or non-finite time")
        return Result(key, bundle_id, compute_stats(xs), tuple(xs), {"source": "ios-results", "percentiles": "samples"})
    vals: dict[str, float] = {}
    for f in ("count", "avg", "std", "min", "max"):
        v = row.get(f)
        if v is None or v == "":
            raise TruncatedLogError(f"{where}: result {key} lacks {f!r} (the file is cut off or a column is missing)")
        try:
            vals[f] = float(v)
        except (TypeError, ValueError):
            raise ResultsFormatError(f"{where}: result {key}: {f}={v!r} is not a number") from None
        if not math.isfinite(vals[f]) or vals[f] < 0:
            raise ResultsFormatError(f"{where}: result {key}: {f}={v!r} must be finite and non-negative")
    median = row.get("median")
    med = float(median) * scale if median not in (None, "") else None
    lo, hi = vals["min"] * scale, vals["max"] * scale
    if not vals["min"] <= vals["avg"] <= vals["max"] or (med is not None and not lo <= med <= hi):
        raise ResultsFormatError(f"{where}: result {key}: need min <= avg (and median) <= max")
    if vals["count"] < 1:
        raise ResultsFormatError(f"{where}: result {key}: count must be at least 1")
    stats, how = stats_from_aggregates(int(vals["count"]), vals["avg"] * scale, vals["std"] * scale,
                                      vals["min"] * scale, vals["max"] * scale, med)
    return Result(key, bundle_id, stats, (), {"source": "ios-results", "percentiles": how})


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _unit(u: Any, where: str) -> str:
    if u not in UNITS:
        raise UnitMismatchError(f"{where}: unit {u!r} is not one of {', '.join(UNITS)}")
    return str(u)


def parse_json(text: str, source: str) -> tuple[str, str, list[tuple[Mapping[str, Any], str]], dict[str, Any]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        # A document that does not end with its closing brace was cut off (a partial copy or download).
        kind = TruncatedLogError if not text.rstrip().endswith("}") else ResultsFormatError
        raise kind(f"{source}: invalid JSON at line {e.lineno}, column {e.colno}"
                   f"{' (the file is cut off)' if kind is TruncatedLogError else ''}") from None
    if not isinstance(doc, dict) or doc.get("format") != RESULTS_FORMAT:
        raise ResultsFormatError(f"{source}: not a fbnet-lut iOS results file (need \"format\": \"{RESULTS_FORMAT}\")")
    bundle_id = doc.get("bundle_id")
    if not isinstance(bundle_id, str) or not bundle_id:
        raise ResultsFormatError(f"{source}: 'bundle_id' is missing; copy it from the bundle's manifest.json")
    unit = _unit(doc.get("unit"), f"{source}: top-level")
    rows = doc.get("results")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ResultsFormatError(f"{source}: 'results' must be a list of objects")
    out = []
    for i, r in enumerate(rows):
        if "unit" in r and r["unit"] != unit:
            raise UnitMismatchError(f"{source}: result {i} ({r.get('key')}) is in {r['unit']!r}, the file declares "
                                    f"{unit!r}")
        out.append((r, f"{source}: result {i}"))
    device = doc.get("device") or {}
    if not isinstance(device, dict):
        raise ResultsFormatError(f"{source}: 'device' must be an object")
    return bundle_id, unit, out, device


def parse_csv(text: str, source: str) -> tuple[str, str, list[tuple[Mapping[str, Any], str]], dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    cols = reader.fieldnames or []
    missing = [c for c in CSV_COLUMNS if c not in cols]
    if missing:
        raise ResultsFormatError(f"{source}: CSV header lacks {', '.join(missing)} (need {','.join(CSV_COLUMNS)})")
    rows = []
    ids: set[str] = set()
    units: set[str] = set()
    for n, row in enumerate(reader, start=2):
        if None in row or any(v is None for v in row.values()):
            raise TruncatedLogError(f"{source}, line {n}: the row has {'too many' if None in row else 'too few'} "
                                    "fields (cut off or malformed)")
        ids.add(row["bundle_id"].strip())
        units.add(_unit(row["unit"].strip(), f"{source}, line {n}"))
        rows.append((row, f"{source}, line {n}"))
    if not rows:
        raise ResultsFormatError(f"{source}: the CSV has no result rows")
    if len(ids) > 1:
        raise BundleMismatchError(f"{source}: rows of several bundles ({', '.join(sorted(ids))}); one bundle per file")
    if len(units) > 1:
        raise UnitMismatchError(f"{source}: rows in different units ({', '.join(sorted(units))}); use one unit")
    return ids.pop(), units.pop(), rows, {}


def results_from_table(form: str, text: str, source: str, manifest: Manifest | None) -> Parsed:
    bundle_id, unit, rows, device = (parse_json if form == "json" else parse_csv)(text, source)
    if manifest is not None and bundle_id != manifest.bundle_id:
        raise BundleMismatchError(f"{source}: these results are from bundle {bundle_id}, not from bundle "
                                  f"{manifest.bundle_id} ({manifest.path})")
    out = Parsed(source, form, {bundle_id}, [], dict(device))
    keys = set(manifest.keys) if manifest else None
    seen: set[str] = set()
    for row, where in rows:
        r = _row_result(row, bundle_id, unit, where)
        if keys is not None and r.key not in keys:
            out.unknown.append(r.key)
            continue
        if r.key in seen:
            out.repeated.append(r.key)
            out.results = [x for x in out.results if x.key != r.key]
        seen.add(r.key)
        out.results.append(r)
    return out


# ---- any form -----------------------------------------------------------------------------------------------
def detect_form(text: str) -> str:
    head = text.lstrip()
    if head.startswith("{"):
        return "json"
    first = head.splitlines()[0] if head else ""
    if first.replace(" ", "").startswith(("bundle_id,", "key,")) or ("bundle_id" in first and first.count(",") >= 3):
        return "csv"
    return "log"


def parse_results(text: str, source: str, manifest: Manifest | None) -> Parsed:
    """Read one results source of any form; with a manifest, map and check it against that bundle."""
    form = detect_form(text)
    if form == "log":
        return results_from_log(parse(text, source, strict=True), manifest)
    try:
        return results_from_table(form, text, source, manifest)
    except csv.Error as e:  # stray carriage returns, a NUL byte
        raise ResultsFormatError(f"{source}: not a readable CSV results file ({e}); save it again as plain "
                                 "CSV") from None
