"""The YAML tables of ProxylessNAS and Once-for-All (han-cai/files): one key per layer type and shape, with the
run count, mean and spread (ms) measured on a phone.

The key grammar is parsed in one place, ``latency_lut.spaces.public_keys`` (:class:`MobileKey`), which also maps
a key onto the op of a space. ProxylessNAS' spread is ``var``, OFA's ``std``. A network's latency is the plain sum
of its entries. This module reads and writes the tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from latency_lut.interop.source import SourceFormatError, number, read_yaml
from latency_lut.spaces.public_keys import MobileKey, parse_key

__all__ = ["MobileKey", "Row", "parse_key", "read_table", "write_table"]

@dataclass(frozen=True)
class Row:
    key: MobileKey
    count: int
    mean: float
    std: float


def read_table(path: Path, fmt: str, spread: str) -> dict[str, Row]:
    """The rows of one YAML table, keyed by the source key. ``spread`` is the field the format uses: ``var``
    (ProxylessNAS) or ``std`` (OFA). Every problem names the file and the key."""
    doc = read_yaml(path, fmt)
    if not isinstance(doc, dict) or not doc:
        raise SourceFormatError(f"{path}: not a {fmt} table (expected a YAML mapping of layer keys to "
                                "{count, mean, " + spread + "})")
    other = "std" if spread == "var" else "var"
    rows: dict[str, Row] = {}
    for key, entry in doc.items():
        where = f"{path}: key {key!r}"
        try:
            mk = parse_key(key)
        except ValueError as e:
            raise SourceFormatError(f"{path}: {e}") from None
        if not isinstance(entry, dict):
            raise SourceFormatError(f"{where}: expected a mapping with count, mean and {spread}")
        fields = set(entry)
        if other in fields and spread not in fields:
            raise SourceFormatError(f"{where}: has {other!r} where a {fmt} table has {spread!r}; is it a table of "
                                    "the other format?")
        unknown = fields - {"count", "mean", spread}
        if unknown or fields != {"count", "mean", spread}:
            raise SourceFormatError(f"{where}: fields are {', '.join(sorted(map(str, fields)))}; a {fmt} table has "
                                    f"count, mean and {spread} (in ms)")
        count = entry["count"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise SourceFormatError(f"{where}: count {count!r} is not a positive whole number")
        mean = number(entry["mean"], where + ", field 'mean'")
        s = number(entry[spread], f"{where}, field {spread!r}")
        rows[str(key)] = Row(mk, count, mean, math.sqrt(s) if spread == "var" else s)
    return rows


def write_table(rows: dict[str, Row], spread: str) -> str:
    """The YAML text of a table (keys sorted, as the published files are)."""
    import yaml

    doc = {k: {"count": r.count, "mean": r.mean, spread: r.std ** 2 if spread == "var" else r.std}
           for k, r in sorted(rows.items())}
    return yaml.safe_dump(doc, sort_keys=True)
