"""HW-NAS-Bench (Li et al., ICLR 2021), FBNet part: per-block cost tables, key -> ms, one table per metric.

Keys (H and W are the op's input size)::

    ConvNorm_H{H}_W{W}_Cin{a}_Cout{b}_kernel{k}_stride{s}_group{g}        stem / head conv + BN + ReLU
    ConvBlock_H{H}_W{W}_Cin{a}_Cout{b}_exp{e}_kernel{k}_stride{s}_group{g} an FBNet candidate block
    Skip_H{H}_W{W}_Cin{a}_Cout{b}_stride{s}                               skip: identity or 1x1 projection
    AvgP_H{H}_W{W}_Cin{c}_Cout{c}_kernel{H}_stride1                        global average pool
    FC_Cin{c}_Cout{n}                                                      classifier

The 224 tables are the FBNet space at 224 (``fbnet``), the 32 tables its CIFAR-100 layout (``fbnet_cifar100``). A
network's cost is the plain sum of its 26 entries. Each key maps to exactly one op of the space; HW-NAS-Bench's
identity skips were timed (pixel3, raspi4: small, not zero) and are kept, except exact zeros, which say no more
than the structural zero every LUT already gives an identity.

Accepted files: a per-metric document ``{"metric", "device", "unit", "resolution", "entries": {key: value}, ...}``
(the layout of ``data/public_luts/hwnasbench_fbnet``, and what :func:`export` writes), a plain ``{key: value}``
dict (``HW_metrics["fbnet"][metric]``), or the whole ``{metric: {key: value}}`` dump with ``metric`` given.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latency_lut.interop.source import SourceFormatError, imported_lut, number, point_stats, read_json, space_ops
from latency_lut.lut import LUT, Entry
from latency_lut.ops import OpSpec
from latency_lut.spaces import SearchSpace, get_space

NAME = "hwnasbench"
SOURCE = "HW-NAS-Bench v1.0 (Li et al., ICLR 2021), github.com/GATECH-EIC/HW-NAS-Bench, FBNet space"
LICENSE = "MIT (Copyright (c) 2022 GaTech-EIC)"
UNIT = "ms"
# The input resolutions the format knows, and the space each is laid out as.
SPACE_OF_RESOLUTION = {224: "fbnet", 32: "fbnet_cifar100"}
# Keys of the source that are no op of the space: the 32 tables' CIFAR-10 classifier, which the API never uses.
KNOWN_EXTRAS = {"FC_Cin1504_Cout10"}


@dataclass(frozen=True)
class Metric:
    device: str  # the LUT header's device name
    name: str  # as HW-NAS-Bench describes it
    measured: bool  # False: a simulator or model estimate
    unit: str = "ms"


_TX2 = "NVIDIA Jetson TX2 (HW-NAS-Bench 'Edge GPU', TensorRT)"
_EYERISS = "Eyeriss-style ASIC accelerator (simulator estimate)"
_FPGA = "FPGA accelerator (model estimate)"
METRICS = {
    "pixel3_latency": Metric("pixel3", "Google Pixel 3 (CPU)", True),
    "raspi4_latency": Metric("raspi4", "Raspberry Pi 4 (CPU)", True),
    "edgegpu_latency": Metric("jetson-tx2", _TX2, True),
    "eyeriss_latency": Metric("eyeriss", _EYERISS, False),
    "fpga_latency": Metric("fpga", _FPGA, False),
    # Energy per inference: a LUT of mJ (header unit "mJ"); sums and ranks work alike, latency losses do not apply.
    "edgegpu_energy": Metric("jetson-tx2", _TX2 + ", on-board power sensors", True, "mJ"),
    "eyeriss_energy": Metric("eyeriss", _EYERISS, False, "mJ"),
    "fpga_energy": Metric("fpga", _FPGA, False, "mJ"),
}

_KEY_RES = {
    "ConvNorm": re.compile(r"^ConvNorm_H(\d+)_W(\d+)_Cin(\d+)_Cout(\d+)_kernel(\d+)_stride(\d+)_group(\d+)$"),
    "ConvBlock": re.compile(
        r"^ConvBlock_H(\d+)_W(\d+)_Cin(\d+)_Cout(\d+)_exp(\d+)_kernel(\d+)_stride(\d+)_group(\d+)$"),
    "Skip": re.compile(r"^Skip_H(\d+)_W(\d+)_Cin(\d+)_Cout(\d+)_stride(\d+)$"),
    "AvgP": re.compile(r"^AvgP_H(\d+)_W(\d+)_Cin(\d+)_Cout(\d+)_kernel(\d+)_stride(\d+)$"),
    "FC": re.compile(r"^FC_Cin(\d+)_Cout(\d+)$"),
}


# ---- keys ---------------------------------------------------------------------------------------------------
def parse_key(key: str) -> OpSpec:
    """The op of one HW-NAS-Bench key; ``ValueError`` for a key outside the grammar."""
    kind = key.split("_", 1)[0]
    rx = _KEY_RES.get(kind)
    m = rx.match(key) if rx else None
    if not m:
        raise ValueError(f"key {key!r} is not in HW-NAS-Bench's grammar (ConvNorm_, ConvBlock_, Skip_, AvgP_, FC_)")
    v = [int(x) for x in m.groups()]
    if kind == "ConvNorm":
        h, w, a, b, k, s, g = v
        return OpSpec("conv", a, h, w, b, kernel=k, stride=s, groups=g)
    if kind == "ConvBlock":
        h, w, a, b, e, k, s, g = v
        return OpSpec("ir", a, h, w, b, kernel=k, stride=s, expansion=e, groups=g)
    if kind == "Skip":
        h, w, a, b, s = v
        return OpSpec("skip", a, h, w, b, stride=s)
    if kind == "AvgP":
        h, w, a, b, k, s = v
        if a != b or k != h or h != w or s != 1:
            raise ValueError(f"key {key!r} is not a global average pool (need Cin == Cout, kernel == H == W, stride 1)")
        return OpSpec("gap", a, h, w)
    a, b = v
    return OpSpec("fc", a, cout=b)


def format_key(spec: OpSpec) -> str:
    """The HW-NAS-Bench key of an op; ``ValueError`` for an op the format has no key for."""
    hw = f"H{spec.h}_W{spec.w}_Cin{spec.cin}_Cout{spec.cout}"
    if spec.dtype != "fp32" or spec.act:
        raise ValueError(f"op {spec.key} has no HW-NAS-Bench key (fp32 ops with the default activation only)")
    if spec.kind == "conv" and spec.padding < 0:
        return f"ConvNorm_{hw}_kernel{spec.kernel}_stride{spec.stride}_group{spec.groups}"
    if spec.kind == "ir" and float(spec.expansion).is_integer():
        return f"ConvBlock_{hw}_exp{int(spec.expansion)}_kernel{spec.kernel}_stride{spec.stride}_group{spec.groups}"
    if spec.kind == "skip":
        return f"Skip_{hw}_stride{spec.stride}"
    if spec.kind == "gap":
        return f"AvgP_{hw}_kernel{spec.h}_stride1"
    if spec.kind == "fc":
        return f"FC_Cin{spec.cin}_Cout{spec.cout}"
    raise ValueError(f"op {spec.key} has no HW-NAS-Bench key")


# ---- import -------------------------------------------------------------------------------------------------
def import_lut(files: Sequence[Path], *, metric: str | None = None, resolution: int | None = None,
               allow_estimates: bool = False) -> LUT:
    """Import one HW-NAS-Bench table (one metric at one resolution) from ``files`` (their entries are pooled)."""
    if not files:
        raise SourceFormatError("no HW-NAS-Bench file given")
    table: dict[str, tuple[float, Path]] = {}
    meta: dict[str, Any] = {}
    for path in files:
        doc_meta, entries = _read_table(Path(path), metric)
        for k, v in doc_meta.items():
            if meta.setdefault(k, v) != v:
                raise SourceFormatError(f"{path}: field {k!r} is {v!r}, but {files[0]} says {meta[k]!r}; import "
                                        "one table at a time")
        for key, v in entries.items():
            if key in table:
                raise SourceFormatError(f"{path}: key {key!r} is also in {table[key][1]}; a table has one entry "
                                        "per key")
            table[key] = (number(v, f"{path}: key {key!r}"), Path(path))
    metric = metric or meta.get("metric")
    known = METRICS.get(str(metric)) if metric else None
    expect = known.unit if known else ("mJ" if str(metric).endswith("_energy") else UNIT)
    unit = meta.get("unit", expect)
    if unit != expect:
        raise SourceFormatError(f"{files[0]}: unit {unit!r} is not one HW-NAS-Bench uses for "
                                f"{metric or 'a latency table'}; expected {expect!r}")
    measured = bool(meta.get("measured_on_device", known.measured if known else True))
    if not measured and not allow_estimates:
        raise SourceFormatError(
            f"{files[0]}: {metric or 'this table'} is a simulator or model estimate, not a measurement; import it "
            "with --allow-estimates (the LUT is then marked as an estimate)"
        )
    specs = {key: _parse(key, path) for key, (_, path) in table.items()}
    space = _space_for(specs, table, meta.get("resolution"), resolution)
    ops = space_ops(space)
    entries: dict[str, Entry] = {}
    skipped: list[str] = []
    for key, spec in specs.items():
        value, path = table[key]
        if spec.key not in ops:
            if key in KNOWN_EXTRAS:
                skipped.append(key)
                continue
            raise SourceFormatError(
                f"{path}: key {key!r} is no op of space {space.id}; the table is for another space, resolution or "
                "width"
            )
        if spec.is_identity and value == 0.0:
            continue  # the structural zero of an identity; nothing to store
        entries[spec.key] = Entry(spec, point_stats(value), extra={"source_key": key})
    device = known.device if known else str(meta.get("device") or metric or "hwnasbench")
    return imported_lut(
        space, entries, fmt=NAME, files=files, device=device,
        device_name=str(meta.get("device") or (known.name if known else device)),
        source=str(meta.get("source") or SOURCE), license=str(meta.get("license") or LICENSE), unit=unit,
        statistics=["value"], estimate=not measured, skipped=skipped,
        notes=f"metric {metric}; the source gives one value per key (no mean/std/count)" if metric else "",
    )


def _read_table(path: Path, metric: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    doc = read_json(path, "HW-NAS-Bench")
    if not isinstance(doc, dict):
        raise SourceFormatError(f"{path}: not a HW-NAS-Bench table (top level is not a JSON object)")
    if doc.get("format") == "fbnet-lut":
        raise SourceFormatError(f"{path}: is a fbnet-lut LUT, not a HW-NAS-Bench table; use it as it is, or "
                                "'fbnet-lut export hwnasbench' it")
    if isinstance(doc.get("entries"), dict):
        meta = {k: doc[k] for k in ("metric", "unit", "resolution", "device", "source", "license",
                                    "measured_on_device") if k in doc}
        if metric and meta.get("metric", metric) != metric:
            raise SourceFormatError(f"{path}: holds metric {meta['metric']!r}, not {metric!r}")
        return meta, doc["entries"]
    if doc and all(isinstance(v, dict) for v in doc.values()):  # the whole {metric: {key: value}} dump
        if not metric:
            raise SourceFormatError(f"{path}: holds metrics {', '.join(sorted(doc))}; name one with --metric")
        if metric not in doc:
            raise SourceFormatError(f"{path}: has no metric {metric!r}; it has {', '.join(sorted(doc))}")
        return {"metric": metric}, doc[metric]
    return ({"metric": metric} if metric else {}), doc


def _parse(key: Any, path: Path) -> OpSpec:
    try:
        return parse_key(str(key))
    except ValueError as e:
        raise SourceFormatError(f"{path}: {e}") from None


def _space_for(specs: dict[str, OpSpec], table: dict[str, tuple[float, Path]], declared: Any,
               asked: int | None) -> SearchSpace:
    """The space of the table, from its stem key (the one conv on 3 input channels)."""
    stems = [(k, s) for k, s in specs.items() if s.kind == "conv" and s.cin == 3]
    if len(stems) != 1:
        where = next(iter(table.values()), (0, "<no file>"))[1]
        raise SourceFormatError(f"{where}: a HW-NAS-Bench FBNet table has one stem key (ConvNorm_..._Cin3_...), "
                                f"found {len(stems)}")
    key, stem = stems[0]
    res, path = stem.h, table[key][1]
    if res not in SPACE_OF_RESOLUTION:
        raise SourceFormatError(f"{path}: key {key!r} is a stem at {res}x{res}; HW-NAS-Bench's FBNet tables are at "
                                f"{' or '.join(map(str, SPACE_OF_RESOLUTION))}")
    if declared is not None and declared != res:
        raise SourceFormatError(f"{path}: field 'resolution' is {declared!r} but key {key!r} is a stem at {res}")
    if asked is not None and asked != res:
        raise SourceFormatError(f"{path}: the table is at resolution {res} (key {key!r}), not {asked} as asked")
    return get_space(SPACE_OF_RESOLUTION[res], res)


# ---- export -------------------------------------------------------------------------------------------------
def export_doc(lut: LUT, space: SearchSpace) -> dict[str, Any]:
    """The per-metric document of a LUT: the 112 keys of HW-NAS-Bench's layout (stem, every candidate of every
    layer, the space's default head, pool and classifier), value = the LUT's median.

    Identity skips the LUT does not price are written as 0.0 (HW-NAS-Bench's API looks every key up).
    """
    if space.name not in SPACE_OF_RESOLUTION.values():
        raise SourceFormatError(f"{lut.name}: space {space.id} has no HW-NAS-Bench layout; the format holds the "
                                "FBNet space (fbnet, fbnet_cifar100)")
    layout = [*space.stem_specs(), *(space.candidate_spec(l, c) for l in space.layers()
                                     for c in range(len(l.candidates))), *space.tail_specs()]
    ops = {s.key: s for s in layout}
    missing = sorted(k for k, s in ops.items() if not s.is_identity and k not in lut)
    if missing:
        raise SourceFormatError(f"{lut.name} lacks {len(missing)} op(s) of space {space.id} that a HW-NAS-Bench "
                                f"table must hold: {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}")
    entries = {format_key(s): (lut.latency(k) if k in lut else 0.0) for k, s in ops.items()}
    h = lut.header
    imported = h.get("imported") if isinstance(h.get("imported"), dict) else None
    return {
        "source": f"fbnet-lut export of {lut.name}" + (f" (imported from {imported['source']})" if imported else ""),
        "license": imported["license"] if imported else "as the LUT's owner sets it",
        "device": h.get("device_info", {}).get("name") or h["device"],
        "metric": f"{h['device']}_{'energy' if h['unit'] == 'mJ' else 'latency'}",
        "measured_on_device": not (imported or {}).get("estimate", False),
        "unit": h["unit"],
        "resolution": space.resolution,
        "dataset_setting": "ImageNet" if space.name == "fbnet" else "CIFAR-100",
        "notes": f"median per op ({h['unit']}) of {h['device']} / {h['runtime']} {h['runtime_version']}, "
                 f"{h['threads']} thread(s), {h['dtype']}; identity skips not priced by the LUT are 0.0",
        "entries": dict(sorted(entries.items())),
    }
