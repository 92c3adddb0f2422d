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
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latency_lut.errors import LUTFormatError, OutputPathError
from latency_lut.measure import Stats
from latency_lut.ops import OpSpec

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
OPTIONAL_SPEC_FIELDS = {"act": "", "padding": -1, "hidden": 0, "expand": 0, "dilation": 1, "tf": False, "se_act": "",
                        "gate": "", "nores": False, "ceil": False, "mix": (), "proj_groups": 1}


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
        _check_writable(path)
        self.to_dataframe().to_csv(path, index=False)
        return path

    def save(self, path: str | Path | None = None) -> Path:
        """Write atomically (temp file + rename), so an interrupted save never leaves a truncated LUT."""
        path = Path(path or self.path or "")
        if not str(path):
            raise OutputPathError("no output path given for the LUT")
        _check_writable(path)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            tmp.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise OutputPathError(f"cannot write LUT {path}: {e.strerror}") from e
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
        hdr.setdefault("created", _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
        return cls(hdr, entries)


def _lut_extra(extra: Mapping[str, Any]) -> dict[str, Any]:
    # Per-measurement extras worth carrying into the LUT (the rest stays in the store).
    return {k: v for k, v in extra.items() if k in ("op_profile", "temperature_c")}


def _check_writable(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputPathError(f"output path {path} is a directory; give a file name such as {path / 'lut.json'}")
    for anc in (parent, *parent.parents):
        if anc.exists() and not anc.is_dir():
            raise OutputPathError(f"output path {path}: {anc} is a file, not a folder; choose another -o path")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"cannot create output folder {parent}: {e.strerror}; choose another -o path") from e
    # Probe by creating a file: os.access says yes to root even on read-only mounts.
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
        if path.exists():
            with open(path, "a"):
                pass
    except OSError as e:
        raise OutputPathError(f"output path {path} is not writable ({e.strerror}); choose another -o path") from None


def check_output_path(path: str | Path) -> Path:
    """Fail early, before any measurement, if ``path`` cannot be written."""
    p = Path(path)
    _check_writable(p)
    return p


# ---- loading and validation -------------------------------------------------------------------------------
def load(path: str | Path) -> LUT:
    """Load and validate a LUT file; every problem is a :class:`LUTFormatError` naming the file and field."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise LUTFormatError(f"LUT file {path} does not exist; build one with 'fbnet-lut build'") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LUTFormatError(f"cannot read LUT file {path}: {e}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        hint = "truncated" if e.pos >= len(text.rstrip()) - 1 else "corrupt"
        raise LUTFormatError(
            f"LUT file {path} is {hint} (invalid JSON at line {e.lineno}, column {e.colno}); rebuild it with "
            "'fbnet-lut build' (measurements already in the store are reused)"
        ) from None
    lut = from_dict(doc, source=str(path))
    lut.path = path
    return lut


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
    try:
        spec = OpSpec(**{f: e[f] for f in SPEC_FIELDS}, **{f: e.get(f, d) for f, d in OPTIONAL_SPEC_FIELDS.items()})
    except KeyError as ex:
        raise LUTFormatError(f"{where}: field {ex.args[0]!r} is missing") from None
    except (TypeError, ValueError) as ex:
        raise LUTFormatError(f"{where}: {ex}") from None
    if spec.key != key:
        raise LUTFormatError(f"{where}: its spec fields give key {spec.key!r}; the file is inconsistent")
    vals: dict[str, Any] = {}
    for f in (*STAT_FIELDS, "count"):
        v = e.get(f)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise LUTFormatError(f"{where}: field {f!r} is missing or not a number")
        if not math.isfinite(v) or v < 0:
            raise LUTFormatError(f"{where}: field {f!r} is {v}; latencies must be finite and non-negative")
        vals[f] = v
    if not vals["min"] <= vals["p10"] <= vals["p25"] <= vals["median"] <= vals["p75"] <= vals["p90"] <= vals["max"]:
        raise LUTFormatError(f"{where}: percentiles are out of order (need min <= p10 <= ... <= p90 <= max)")
    stats = Stats(count=int(vals["count"]), **{f: float(vals[f]) for f in STAT_FIELDS})
    return Entry(spec, stats, bool(e.get("flagged", False)), dict(e.get("extra") or {}))
