"""The LUT file: a versioned JSON document a search consumes, readable without this package.

Layout (schema version 1)::

    {
      "format": "fbnet-lut",
      "schema_version": 1,
      "header": {device, device_info, runtime, runtime_version, threads, dtype, unit, protocol, exporter,
                 space, tool_version, created, complete, calibration},
      "entries": {
        "<op key>": {kind, cin, h, w, cout, kernel, stride, expansion, groups, dtype,
                     median, p10, p90, mean, std, cv, count, noise, flagged, flops, params}
      }
    }

Latencies are in the header's ``unit`` (always ``ms``). See the README for every field.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latency_lut.blocks.base import FIELD_DEFAULTS
from latency_lut.errors import LUTFormatError, OutputPathError
from latency_lut.measure import Stats, implausible_ms
from latency_lut.ops import OpSpec
from latency_lut.outputs import check_writable, read_input, write_atomic

FORMAT = "fbnet-lut"
SCHEMA_VERSION = 1

HEADER_FIELDS: dict[str, type | tuple[type, ...]] = {
    "device": str,
    "device_info": dict,
    "runtime": str,
    "runtime_version": str,
    "threads": int,
    "dtype": str,
    "unit": str,
    "protocol": dict,
    "exporter": dict,
    "space": dict,
    "tool_version": str,
    "created": str,
    "complete": bool,
}
STAT_FIELDS = ("median", "p10", "p25", "p75", "p90", "mean", "std", "cv", "min", "max")
SPEC_FIELDS = ("kind", "cin", "h", "w", "cout", "kernel", "stride", "expansion", "groups", "dtype")
# Spec fields added with the generic op kinds: written only when not at their default, so the entries of the
# FBNet ops (and every LUT file written before them) are unchanged.
OPTIONAL_SPEC_FIELDS = {f: d for f, d in FIELD_DEFAULTS.items() if f not in SPEC_FIELDS}


@dataclass
class Entry:
    """One LUT row: an op spec, its latency statistics (ms), and its cost."""

    spec: OpSpec
    stats: Stats
    flagged: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def median(self) -> float:
        return self.stats.median

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {f: getattr(self.spec, f) for f in SPEC_FIELDS}
        d.update({f: v for f, dflt in OPTIONAL_SPEC_FIELDS.items() if (v := getattr(self.spec, f)) != dflt})
        d.update(self.stats.to_dict())
        d.update(flagged=self.flagged, flops=self.spec.flops, params=self.spec.params)
        if self.extra:
            d["extra"] = self.extra
        return d


@dataclass
class LUT:
    """A latency lookup table: header plus entries keyed by op key."""

    header: dict[str, Any]
    entries: dict[str, Entry]
    path: Path | None = None

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, key: str) -> Entry:
        return self.entries[key]

    def latency(self, key: str, stat: str = "median") -> float:
        return float(getattr(self.entries[key].stats, stat))

    @property
    def name(self) -> str:
        return str(self.path) if self.path else f"<{self.header.get('device')}/{self.header.get('runtime')} LUT>"

    # ---- conversion ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "header": self.header,
            "entries": {k: e.to_dict() for k, e in sorted(self.entries.items())},
        }

    def to_dataframe(self):  # -> pandas.DataFrame
        """One row per entry: key, spec fields, statistics (ms), flagged, flops, params."""
        import pandas as pd

        rows = [{"key": k, **{c: v for c, v in e.to_dict().items() if c != "extra"}} for k, e in self.entries.items()]
        cols = ["key", *SPEC_FIELDS, *STAT_FIELDS, "noise", "count", "flagged", "flops", "params"]
        return pd.DataFrame(rows, columns=cols)

    def to_csv(self, path: str | Path) -> Path:
        path = Path(path)
        check_writable(path)
        return write_atomic(path, self.to_dataframe().to_csv(index=False), "CSV")

    def save(self, path: str | Path | None = None) -> Path:
        """Write atomically (temp file + rename), so an interrupted save never leaves a truncated LUT."""
        path = Path(path or self.path or "")
        if not str(path):
            raise OutputPathError("no output path given for the LUT")
        check_writable(path)
        try:
            text = json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"
        except ValueError as e:  # NaN or Infinity: strict JSON has no such numbers, so no reader could load it
            raise LUTFormatError(f"LUT {path} would hold a non-finite number ({e}); nothing was written") from None
        write_atomic(path, text, "LUT")
        self.path = path
        return path

    # ---- building ------------------------------------------------------------------------------------------
    @classmethod
    def from_records(cls, header: Mapping[str, Any], specs: Iterable[OpSpec], records: Mapping[str, Any]) -> LUT:
        """Assemble a LUT from op specs and the store's accepted records (``store.Record``)."""
        entries: dict[str, Entry] = {}
        for spec in specs:
            rec = records.get(spec.key)
            if rec is not None:
                entries[spec.key] = Entry(spec, rec.stats, rec.flagged, _lut_extra(rec.extra))
        hdr = dict(header)
        hdr.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        return cls(hdr, entries)


def _lut_extra(extra: Mapping[str, Any]) -> dict[str, Any]:
    # Per-measurement extras worth carrying into the LUT (the rest stays in the store).
    return {k: v for k, v in extra.items() if k in ("op_profile", "temperature_c", "round_ms", "round_spread")}


def check_output_path(path: str | Path) -> Path:
    """Fail early, before any measurement, if ``path`` cannot be written."""
    p = Path(path)
    check_writable(p)
    return p


# ---- loading and validation -------------------------------------------------------------------------------
def load(path: str | Path) -> LUT:
    """Load and validate a LUT file; every problem is a :class:`LUTFormatError` naming the file and field."""
    path = Path(path)
    text = read_input(path, "LUT file", hint="give the path of a LUT .json file",
                      missing="build one with 'fbnet-lut build'", error=LUTFormatError)
    try:
        doc = json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as e:
        raise LUTFormatError(f"LUT file {path} has key {e.args[0]!r} twice; a LUT names each field and entry once "
                             "(rebuild it, or delete one copy)") from None
    except RecursionError:
        raise LUTFormatError(f"LUT file {path} is nested too deeply to be a LUT") from None
    except json.JSONDecodeError as e:
        hint = "truncated" if e.pos >= len(text.rstrip()) - 1 else "corrupt"
        raise LUTFormatError(
            f"LUT file {path} is {hint} (invalid JSON at line {e.lineno}, column {e.colno}); rebuild it with "
            "'fbnet-lut build' (measurements already in the store are reused)"
        ) from None
    lut = from_dict(doc, source=str(path))
    lut.path = path
    return lut


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _non_finite(obj: Any, where: str) -> str | None:
    """The first place in ``obj`` holding NaN or Infinity (which strict JSON has no number for)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return where
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        if (found := _non_finite(v, f"{where}.{k}")) is not None:
            return found
    return None


# Types of the spec fields an entry carries (strict: a quoted "16" is an error naming its field, not a crash).
_SPEC_TYPES: dict[str, type | tuple[type, ...]] = {
    "kind": str, "dtype": str, "act": str, "expansion": (int, float),
    **{f: int for f in ("cin", "h", "w", "cout", "kernel", "stride", "groups", "padding", "hidden")},
}


def from_dict(doc: Any, source: str = "<LUT>") -> LUT:
    if not isinstance(doc, dict):
        raise LUTFormatError(f"{source}: not a LUT file (top level is not a JSON object)")
    if doc.get("format") != FORMAT:
        raise LUTFormatError(f"{source}: not a fbnet-lut LUT file (field 'format' is {doc.get('format')!r})")
    ver = doc.get("schema_version")
    if ver != SCHEMA_VERSION:
        raise LUTFormatError(
            f"{source}: schema_version {ver!r} is not supported (this tool reads version {SCHEMA_VERSION}); "
            "rebuild the LUT with this version of fbnet-lut"
        )
    header = doc.get("header")
    if not isinstance(header, dict):
        raise LUTFormatError(f"{source}: field 'header' is missing or not an object")
    for name, typ in HEADER_FIELDS.items():
        if name not in header:
            raise LUTFormatError(f"{source}: header field '{name}' is missing")
        if not isinstance(header[name], typ) or (typ is int and isinstance(header[name], bool)):
            raise LUTFormatError(f"{source}: header field '{name}' has the wrong type")
    if (bad := _non_finite(header, "header")) is not None:
        raise LUTFormatError(f"{source}: {bad} is not a finite number (NaN or Infinity); fix or rebuild the LUT")
    raw = doc.get("entries")
    if not isinstance(raw, dict):
        raise LUTFormatError(f"{source}: field 'entries' is missing or not an object")
    entries: dict[str, Entry] = {}
    for key, e in raw.items():
        entries[key] = _entry_from_dict(key, e, source)
    return LUT(header, entries)


def _entry_from_dict(key: str, e: Any, source: str) -> Entry:
    where = f"{source}: entry {key!r}"
    if not isinstance(e, dict):
        raise LUTFormatError(f"{where} is not an object")
    fields = {**{f: e.get(f, d) for f, d in OPTIONAL_SPEC_FIELDS.items()}}
    for f in SPEC_FIELDS:
        if f not in e:
            raise LUTFormatError(f"{where}: field {f!r} is missing")
        fields[f] = e[f]
    for f, typ in _SPEC_TYPES.items():
        v = fields[f]
        if not isinstance(v, typ) or isinstance(v, bool) or (isinstance(v, float) and not math.isfinite(v)):
            want = "a string" if typ is str else "an integer" if typ is int else "a number"
            raise LUTFormatError(f"{where}: field {f!r} is {v!r}, not {want}")
    try:
        spec = OpSpec(**fields)
    except (TypeError, ValueError, OverflowError) as ex:
        raise LUTFormatError(f"{where}: {ex}") from None
    if spec.key != key or OpSpec.from_key(key) != spec:  # a field the key does not carry (a conv's expansion)
        raise LUTFormatError(f"{where}: its spec fields give key {spec.key!r} / {OpSpec.from_key(spec.key)}; the "
                             "file is inconsistent")
    vals: dict[str, Any] = {}
    for f in (*STAT_FIELDS, "count"):
        v = e.get(f)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise LUTFormatError(f"{where}: field {f!r} is missing or not a number")
        why = implausible_ms(v) if f not in ("count", "cv") else None
        if why:
            raise LUTFormatError(f"{where}: field {f!r} is {v}: {why}")
        if not math.isfinite(v) or v < 0 or (f == "count" and (v < 1 or v != int(v))):
            raise LUTFormatError(f"{where}: field {f!r} is {v}; it must be finite and non-negative"
                                 f"{' (a whole number of runs, >= 1)' if f == 'count' else ''}")
        vals[f] = v
    if not vals["min"] <= vals["p10"] <= vals["p25"] <= vals["median"] <= vals["p75"] <= vals["p90"] <= vals["max"]:
        raise LUTFormatError(f"{where}: percentiles are out of order (need min <= p10 <= ... <= p90 <= max)")
    stats = Stats(count=int(vals["count"]), **{f: float(vals[f]) for f in STAT_FIELDS})
    flagged, extra = e.get("flagged", False), e.get("extra") or {}
    if not isinstance(flagged, bool) or not isinstance(extra, dict):
        raise LUTFormatError(f"{where}: field {'flagged' if not isinstance(flagged, bool) else 'extra'!r} has the "
                             "wrong type (flagged is true/false, extra an object)")
    return Entry(spec, stats, flagged, dict(extra))
