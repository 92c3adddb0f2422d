"""ProxylessNAS (mobile, Pixel 1) and Once-for-All (Note10, one table per resolution) YAML tables, in and out.

The tables' grammar is read and checked by :mod:`latency_lut.interop.mobile_table`; which op of the space a key is
comes from the space (:func:`latency_lut.spaces.public_keys.public_key_spec`), so each key maps to exactly one op
of ``proxylessnas`` (224) or ``ofa_mbv3`` (width 1.2, the table's resolution). Ops of the space a table lacks are
listed in the header and the LUT is marked incomplete.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latency_lut.errors import UnknownOpError
from latency_lut.interop.mobile_table import MobileKey, Row, parse_key, read_table, write_table
from latency_lut.interop.source import SourceFormatError, imported_lut, point_stats
from latency_lut.lut import LUT, Entry
from latency_lut.ops import OpSpec
from latency_lut.spaces import SearchSpace, get_space
from latency_lut.spaces.public_keys import public_key_spec


@dataclass(frozen=True)
class TableFormat:
    name: str  # the import/export format name
    title: str  # how errors name it
    space: str
    width: float
    spread: str  # "var" or "std"
    device: str
    device_name: str
    source: str
    license: str
    mid_channels: bool  # OFA's expand is the absolute mid channels; ProxylessNAS' the ratio


FORMATS = {
    "proxylessnas": TableFormat(
        "proxylessnas", "ProxylessNAS", "proxylessnas", 1.0, "var", "pixel1",
        "Google Pixel 1 (ProxylessNAS mobile setting, TFLite)",
        "ProxylessNAS (Cai et al., ICLR 2019) mobile latency table, github.com/han-cai/files "
        "proxylessnas/mobile_trim.yaml", "not stated by the source (han-cai/files)", False),
    "ofa": TableFormat(
        "ofa", "Once-for-All", "ofa_mbv3", 1.2, "std", "note10", "Samsung Galaxy Note10",
        "Once-for-All (Cai et al., ICLR 2020) Note10 latency table, github.com/han-cai/files "
        "ofa/.../{resolution}_lookup_table.yaml", "not stated by the source (han-cai/files)", True),
}


def import_lut(fmt: str, files: Sequence[Path], *, resolution: int | None = None) -> LUT:
    f = FORMATS[fmt]
    if not files:
        raise SourceFormatError(f"no {f.title} file given")
    rows: dict[str, tuple[Row, Path]] = {}
    for path in files:
        for key, row in read_table(Path(path), f.title, f.spread).items():
            if key in rows:
                raise SourceFormatError(f"{path}: key {key!r} is also in {rows[key][1]}; a table has one entry "
                                        "per key")
            rows[key] = (row, Path(path))
    space = get_space(f.space, _resolution(f, rows, resolution), f.width)
    entries: dict[str, Entry] = {}
    by_op: dict[str, str] = {}
    for key, (row, path) in rows.items():
        try:
            spec = public_key_spec(space, key)
        except (UnknownOpError, ValueError) as e:
            raise SourceFormatError(f"{path}: key {key!r} is no op of space {space.id} ({e}); the table is for "
                                    "another space, resolution or width") from None
        if spec.key in by_op:
            raise SourceFormatError(f"{path}: keys {by_op[spec.key]!r} and {key!r} both map to op {spec.key} of "
                                    f"space {space.id}")
        by_op[spec.key] = key
        entries[spec.key] = Entry(spec, point_stats(row.mean, row.std, row.count), extra={"source_key": key})
    return imported_lut(
        space, entries, fmt=f.name, files=files, device=f.device, device_name=f.device_name, source=f.source,
        license=f.license, unit="ms", statistics=["count", "mean", f.spread],
        notes=f"{f.spread} converted to std" if f.spread == "var" else "",
    )


def _resolution(f: TableFormat, rows: dict[str, tuple[Row, Path]], asked: int | None) -> int:
    stems = [(k, r.key, p) for k, (r, p) in rows.items() if r.key.type == "Conv" and r.key.cin == 3]
    if len(stems) != 1:
        where = next(iter(rows.values()))[1] if rows else "<no file>"
        raise SourceFormatError(f"{where}: a {f.title} table has one stem key (Conv-input:RxRx3-...), found "
                                f"{len(stems)}")
    key, mk, path = stems[0]
    if asked is not None and asked != mk.h:
        raise SourceFormatError(f"{path}: the table is at resolution {mk.h} (key {key!r}), not {asked} as asked")
    return mk.h


# ---- export -------------------------------------------------------------------------------------------------
def export_text(fmt: str, lut: LUT, space: SearchSpace) -> str:
    """The YAML table of ``lut``: every op of its space (and any other entry the format has a key for), with the
    count, mean and spread of the LUT's entry."""
    f = FORMATS[fmt]
    if space.name != f.space:
        raise SourceFormatError(f"{lut.name}: space {space.id} is not {f.space}; the {f.title} format holds that "
                                "space only")
    needed = [s.key for s in space.unique_specs() if not s.is_identity]
    missing = sorted(k for k in needed if k not in lut)
    if missing:
        raise SourceFormatError(f"{lut.name} lacks {len(missing)} op(s) of space {space.id} that a {f.title} table "
                                f"holds: {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}")
    rows: dict[str, Row] = {}
    roles = _roles(space)
    for k, e in lut.entries.items():
        key = e.extra.get("source_key") or _key_of(f, space, e.spec, roles.get(k, ""), required=k in needed)
        if key is None:
            continue  # an extra op (say, a measured-missing one) the format has no key for
        rows[key] = Row(parse_key(key), max(1, e.stats.count), e.stats.mean, e.stats.std)
    return write_table(rows, f.spread)


def _roles(space: SearchSpace) -> dict[str, str]:
    """The table's layer type of each fixed op: the stem is ``Conv``; in the head, a conv is ``Conv_1``, the pool
    ``AvgPool2D``, the classifier (last) ``Logits`` and a linear layer before it (OFA's feature mix) ``Conv_2``."""
    roles = {s.key: "Conv" for s in space.stem_specs()}
    for hw in space.head_widths():
        tail = space.tail_specs(hw)
        for i, s in enumerate(tail):
            last = i == len(tail) - 1
            roles[s.key] = ("Logits" if last else "Conv_2") if s.kind in ("fc", "logits") else \
                {"conv": "Conv_1", "gap": "AvgPool2D"}.get(s.kind, "")
    return roles


def _key_of(f: TableFormat, space: SearchSpace, spec: OpSpec, role: str, required: bool) -> str | None:
    """The table key of an op: built from its fields and role, then checked to map back to the same op."""
    oh, ow = spec.out_hw
    io = (spec.h, spec.w, spec.cin)
    mk: MobileKey | None = None
    if spec.kind == "ir":
        e: Any = spec.mid if f.mid_channels else spec.mid / spec.cin
        se = (bool(spec.hidden), spec.activation == "hswish") if f.mid_channels else (None, None)
        mk = MobileKey("expanded_conv", *io, oh, ow, spec.cout, e, spec.kernel, spec.stride, spec.has_residual, *se)
    elif role == "Logits":
        mk = MobileKey("Logits", *io, None, None, spec.cout)
    elif role == "AvgPool2D":
        mk = MobileKey("AvgPool2D", *io, 1, 1, spec.cin)
    elif role:
        mk = MobileKey(role, *io, oh, ow, spec.cout)
    try:
        if mk is not None and public_key_spec(space, mk.key).key == spec.key:
            return mk.key
    except (UnknownOpError, ValueError):
        pass
    if not required:
        return None
    raise SourceFormatError(f"op {spec.key} of space {space.id} has no {f.title} key")
