"""The YAML tables of ProxylessNAS and Once-for-All (han-cai/files): one key per layer type and shape, with the
run count, mean and spread (ms) measured on a phone.

Key grammar (both projects)::

    {type}-input:{H}x{W}x{C}-output:{H'}x{W'}x{C'}[-expand:{E}-kernel:{K}-stride:{S}-idskip:{0|1}[-se:{0|1}-hs:{0|1}]]

``type`` is ``Conv`` (stem), ``Conv_1`` (final expand), ``Conv_2`` (OFA's feature mix), ``AvgPool2D``, ``Logits``
(classifier; its output is a class count, ``output:1000``) or ``expanded_conv`` (an inverted-residual block, the only
type with the expand/kernel/stride/idskip fields). ProxylessNAS' ``expand`` is the expansion *ratio* and its spread is
``var``; OFA's ``expand`` is the absolute number of *mid channels*, its spread is ``std`` and its blocks carry
``se`` and ``hs``. ``idskip:1`` is a residual connection. A network's latency is the plain sum of its entries.

This module reads and writes the tables; which op of a search space a key is belongs to the space.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latency_lut.interop.source import SourceFormatError, number, read_yaml

TYPES = ("Conv", "Conv_1", "Conv_2", "AvgPool2D", "Logits", "expanded_conv")
_KEY_RE = re.compile(
    r"^(?P<type>[A-Za-z_0-9]+)-input:(?P<h>\d+)x(?P<w>\d+)x(?P<c>\d+)-output:(?:(?P<oh>\d+)x(?P<ow>\d+)x)?(?P<oc>\d+)"
    r"(?:-expand:(?P<e>\d+(?:\.\d+)?)-kernel:(?P<k>\d+)-stride:(?P<s>\d+)-idskip:(?P<id>[01])"
    r"(?:-se:(?P<se>[01])-hs:(?P<hs>[01]))?)?$"
)


@dataclass(frozen=True)
class MobileKey:
    """One parsed key; ``expand`` is a ratio (ProxylessNAS) or a channel count (OFA), as the table has it."""

    type: str
    h: int
    w: int
    cin: int
    out_h: int | None  # None for Logits (its output is a class count)
    out_w: int | None
    cout: int
    expand: float | None = None
    kernel: int | None = None
    stride: int | None = None
    idskip: bool | None = None
    se: bool | None = None
    hs: bool | None = None

    @property
    def key(self) -> str:
        out = f"{self.out_h}x{self.out_w}x{self.cout}" if self.out_h is not None else str(self.cout)
        k = f"{self.type}-input:{self.h}x{self.w}x{self.cin}-output:{out}"
        if self.type == "expanded_conv":
            e = int(self.expand) if float(self.expand).is_integer() else self.expand
            k += f"-expand:{e}-kernel:{self.kernel}-stride:{self.stride}-idskip:{int(bool(self.idskip))}"
            if self.se is not None:
                k += f"-se:{int(self.se)}-hs:{int(bool(self.hs))}"
        return k


def parse_key(key: Any) -> MobileKey:
    """A key of the grammar, checked for consistency; ``ValueError`` saying what is wrong."""
    m = _KEY_RE.match(str(key))
    if not m:
        raise ValueError(f"key {key!r} is not in the grammar {{type}}-input:HxWxC-output:HxWxC[-expand:..."
                         "-kernel:..-stride:..-idskip:0|1[-se:0|1-hs:0|1]]")
    g = m.groupdict()
    typ = g["type"]
    if typ not in TYPES:
        raise ValueError(f"key {key!r}: unknown layer type {typ!r}; the format has {', '.join(TYPES)}")
    block = typ == "expanded_conv"
    if block != (g["e"] is not None):
        raise ValueError(f"key {key!r}: " + ("an expanded_conv needs expand, kernel, stride and idskip" if block
                                            else f"a {typ} takes no expand/kernel/stride/idskip fields"))
    if (typ == "Logits") != (g["oh"] is None):
        raise ValueError(f"key {key!r}: " + ("Logits' output is a class count (output:N)" if typ == "Logits"
                                            else "the output must be HxWxC"))
    mk = MobileKey(
        typ, int(g["h"]), int(g["w"]), int(g["c"]),
        int(g["oh"]) if g["oh"] else None, int(g["ow"]) if g["ow"] else None, int(g["oc"]),
        (float(g["e"]) if "." in g["e"] else int(g["e"])) if block else None,
        int(g["k"]) if block else None, int(g["s"]) if block else None, g["id"] == "1" if block else None,
        g["se"] == "1" if g["se"] else None, g["hs"] == "1" if g["hs"] else None,
    )
    if block:
        if mk.stride < 1 or mk.kernel < 1 or not mk.expand > 0:
            raise ValueError(f"key {key!r}: kernel, stride and expand must be positive")
        if (mk.out_h, mk.out_w) != (math.ceil(mk.h / mk.stride), math.ceil(mk.w / mk.stride)):
            raise ValueError(f"key {key!r}: output {mk.out_h}x{mk.out_w} does not follow from input {mk.h}x{mk.w} "
                             f"at stride {mk.stride}")
        if mk.idskip and (mk.stride != 1 or mk.cin != mk.cout):
            raise ValueError(f"key {key!r}: idskip:1 (a residual) needs stride 1 and equal channels")
    return mk


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
