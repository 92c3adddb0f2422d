"""What every importer and exporter of a public LUT format shares: strict reading of the source files, the
``imported`` header, entries that carry only the statistics a source has, and the ops a space can hold.

A public table gives a mean (sometimes with a variance or standard deviation and a run count) per key, never the
raw samples. An imported entry therefore repeats that one value in every percentile field (median, p10 ... max),
keeps the source's std and count (1 where the source gives no count: a LUT entry holds at least one run),
and the header's ``imported`` block says which statistics the source had and that there are no raw samples.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from latency_lut import __version__
from latency_lut.errors import LatencyLutError
from latency_lut.lut import LUT, Entry
from latency_lut.measure import Stats
from latency_lut.ops import OpSpec
from latency_lut.spaces import SearchSpace


class SourceFormatError(LatencyLutError):
    """A public LUT file that is not of the named format, or holds a bad key or value."""


# ---- strict reading ---------------------------------------------------------------------------------------
def read_json(path: Path, fmt: str) -> Any:
    """JSON with duplicate keys and NaN/Infinity rejected, every problem naming the file."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                raise SourceFormatError(f"{path}: key {k!r} appears twice; a {fmt} table has one entry per key")
            out[k] = v
        return out

    def constant(name: str) -> Any:
        raise SourceFormatError(f"{path}: value {name} is not a number; latencies must be finite")

    text = _read_text(path)
    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as e:
        raise SourceFormatError(f"{path}: not a {fmt} JSON file (invalid JSON at line {e.lineno}, column "
                                f"{e.colno})") from None


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser when there is one
    """A safe YAML loader that refuses a mapping with a repeated key (PyYAML silently keeps the last)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for knode, vnode in node.value:
        key = loader.construct_object(knode, deep=deep)
        if key in out:
            raise SourceFormatError(f"{loader.name}: key {key!r} appears twice (line {knode.start_mark.line + 1})")
        out[key] = loader.construct_object(vnode, deep=deep)
    return out


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_yaml(path: Path, fmt: str) -> Any:
    text = _read_text(path)
    loader = _UniqueKeyLoader(text)
    loader.name = str(path)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise SourceFormatError(f"{path}: not a {fmt} YAML file ({str(e).splitlines()[0]})") from None
    finally:
        loader.dispose()


def _read_text(path: Path) -> str:
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        raise SourceFormatError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SourceFormatError(f"cannot read {path}: {e}") from None


def number(v: Any, where: str) -> float:
    """A finite, non-negative latency, or an error naming the file and key."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SourceFormatError(f"{where}: value {v!r} is not a number")
    if not math.isfinite(v) or v < 0:
        raise SourceFormatError(f"{where}: value {v} is not allowed; latencies must be finite and non-negative")
    return float(v)


# ---- entries and header -----------------------------------------------------------------------------------
def point_stats(mean: float, std: float = 0.0, count: int = 1) -> Stats:
    """Stats of an imported entry: the source's mean in every percentile field, its std and count (1 = not given;
    the header's ``imported.statistics`` says whether the source has a count)."""
    return Stats(count=count, median=mean, p10=mean, p25=mean, p75=mean, p90=mean, mean=mean, std=std,
                 cv=std / mean if mean > 0 else 0.0, min=mean, max=mean)


def space_ops(space: SearchSpace) -> dict[str, OpSpec]:
    """Every op an architecture of ``space`` can contain, by key, identities included (a source may time them)."""
    ops = {s.key: s for s in space.unique_specs()}
    for layer in space.layers():
        for c in range(len(layer.candidates)):
            spec = space.candidate_spec(layer, c)
            ops.setdefault(spec.key, spec)
    return ops


def imported_lut(space: SearchSpace, entries: Mapping[str, Entry], *, fmt: str, files: Iterable[Path], device: str,
                 device_name: str, source: str, license: str, unit: str, statistics: list[str],
                 estimate: bool = False, runtime: str = "unknown", skipped: Iterable[str] = (),
                 notes: str = "") -> LUT:
    """A LUT of imported entries; ``complete`` and ``imported.missing`` say which ops of the space it lacks."""
    needed = [s.key for s in space.unique_specs()]
    missing = [k for k in needed if k not in entries]
    header = {
        "device": device,
        "device_kind": "estimate" if estimate else "imported",
        "device_info": {"name": device_name},
        "runtime": runtime,
        "runtime_version": "unknown",
        "threads": 0,
        "dtype": "fp32",
        "unit": unit,
        "protocol": {},
        "exporter": {},
        "space": {**space.describe(), "id": space.id},
        "tool_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "complete": not missing,
        "calibration": None,
        "imported": {
            "format": fmt,
            "files": [Path(f).name for f in files],
            "source": source,
            "license": license,
            "device": device_name,
            "unit": unit,
            "statistics": statistics,
            "raw_samples": False,
            "estimate": estimate,
            "note": "no raw samples: median, percentiles, min and max all repeat the source's mean; std and count "
                    "are the source's (std 0 and count 1 where it gives none; see 'statistics')"
                    + (f". {notes}" if notes else ""),
            "missing": missing,
            "skipped": sorted(skipped),
        },
    }
    return LUT(header, dict(sorted(entries.items())))


def imported_info(lut: LUT) -> dict[str, Any] | None:
    """The ``imported`` block of a LUT header, or None for a LUT measured by this tool."""
    info = lut.header.get("imported")
    return info if isinstance(info, dict) else None
