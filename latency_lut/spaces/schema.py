"""Space definitions: the YAML schema, its loader, and the checks that name the file, line and field.

A space file (the built-in ones are in ``spaces/builtin/``)::

    name: myspace                       # [a-z0-9_]+; the name LUTs and --space use
    description: ...                    # optional
    input: {channels: 3}                # optional
    resolution: {default: 224, min: 32, choices: [160, 192, 224]}   # choices optional
    width: {default: 1.0, divisor: 8, choices: [1.0, 1.2]}          # channels c -> make_divisible(c * w, divisor)
    num_classes: 1000
    candidate_sets:                     # optional named lists, referenced by stages
      mb: [ir_k3_e3, ir_k5_e3, ir_k3_e6, zero]
    stem:                               # fixed ops, in order: a registry kind and its fields (out, kernel,
      - {op: conv, out: 32, kernel: 3, stride: 2, act: relu6}   # stride, act, groups (-1: depthwise), padding)
    stages:                             # searchable layers
      - {out: 16, layers: 1, stride: 1, candidates: [ds_k3_r6]}
      - {out: 24, layers: 4, stride: 2, candidates: mb, act: relu6, se: 0.25, se_gate: hsigmoid, depth: [2, 3, 4]}
    head_channels: 1280                 # the value of out: head (a named arch may override it)
    head:
      - {op: conv, out: head, kernel: 1, act: relu6}
      - {op: gap}
      - {op: fc, out: classes}
    archs:                              # named architectures: one candidate per layer (names or indices)
      mine: {choices: "ds_k3_r6 | ir_k3_e3 ir_k3_e3 zero zero", head: 1280}

Candidates are decoded by ``latency_lut.spaces.candidates``. Loading uses ``yaml.safe_load``-level construction
only (no Python tags).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from latency_lut.blocks import REGISTRY
from latency_lut.blocks.base import ACTS, GATES
from latency_lut.errors import ArchitectureError, LatencyLutError
from latency_lut.safe_yaml import load_yaml
from latency_lut.spaces.base import OpDef, SearchSpace, Stage
from latency_lut.spaces.candidates import CandidateError, decode

MIN_RESOLUTION = 32
TOP_FIELDS = {"name", "description", "source", "input", "resolution", "width", "num_classes", "candidate_sets",
              "stem", "stages", "head_channels", "head", "archs"}
STAGE_FIELDS = {"out", "layers", "stride", "candidates", "act", "se", "se_gate", "depth", "name"}
OP_FIELDS = {"op", "out", "kernel", "stride", "act", "groups", "padding"}


class SpaceFileError(LatencyLutError):
    """A space file (or embedded definition) that does not describe a valid space; names the file and field."""


class _Where:
    """Finds the line of a field path in the YAML text, so that errors can name it."""

    def __init__(self, source: str, text: str | None) -> None:
        self.source = source
        self.root = None
        if text is not None:
            try:
                self.root = yaml.compose(text, Loader=yaml.SafeLoader)
            except yaml.YAMLError:
                self.root = None

    def line(self, path: tuple[Any, ...]) -> int | None:
        node = self.root
        for p in path:
            if isinstance(node, yaml.MappingNode):
                node = next((v for k, v in node.value if k.value == p), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(p, int) and p < len(node.value):
                node = node.value[p]
            else:
                node = None
            if node is None:
                return None
        return node.start_mark.line + 1 if node is not None else None

    def error(self, path: tuple[Any, ...], msg: str) -> SpaceFileError:
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
        line = self.line(path)
        where = f"{self.source}" + (f", line {line}" if line else "") + (f", field {field}" if field else "")
        return SpaceFileError(f"space file {where}: {msg}")


def load_file(path: str | Path) -> dict[str, Any]:
    """Read and check a space file; returns its definition (plain data, as embedded in LUT headers)."""
    path = Path(path)
    if not path.exists():
        raise SpaceFileError(f"space file {path} does not exist; give a built-in space name or a .yaml file")
    # The shared loader's size, alias and depth limits: a space file is user input like a device descriptor.
    doc = load_yaml(path, what="space file", error=SpaceFileError, max_bytes=1 << 20)
    text = path.read_text(encoding="utf-8")
    check_definition(doc, str(path), text)
    return doc


def check_definition(doc: Any, source: str, text: str | None = None) -> None:
    """Check a definition fully (schema, candidates, channels, named archs at the default resolution and width)."""
    where = _Where(source, text)
    if not isinstance(doc, dict):
        raise where.error((), "the file must be a mapping with name, stem, stages and head")
    for k in doc:
        if k not in TOP_FIELDS:
            raise where.error((k,), f"unknown field; expected some of {', '.join(sorted(TOP_FIELDS))}")
    for k in ("name", "stem", "stages", "head"):
        if k not in doc:
            raise where.error((k,), "is missing")
    if not isinstance(doc["name"], str) or not re.fullmatch(r"[a-z][a-z0-9_]*", doc["name"]):
        raise where.error(("name",), f"{doc['name']!r} must be lower-case letters, digits and _")
    res, width = _rules(doc, where)
    sets = doc.get("candidate_sets") or {}
    if not isinstance(sets, dict):
        raise where.error(("candidate_sets",), "must map names to lists of candidates")
    for i, op in enumerate(_list(doc, "stem", where)):
        _op(op, ("stem", i), where)
    for i, op in enumerate(_list(doc, "head", where)):
        _op(op, ("head", i), where)
    for i, st in enumerate(_list(doc, "stages", where)):
        _stage(st, i, sets, where)
    if not isinstance(doc.get("num_classes", 1000), int) or doc.get("num_classes", 1000) < 1:
        raise where.error(("num_classes",), "must be an integer >= 1")
    if "head_channels" in doc and (not isinstance(doc["head_channels"], int) or doc["head_channels"] < 1):
        raise where.error(("head_channels",), "must be an integer >= 1")
    archs = doc.get("archs") or {}
    if not isinstance(archs, dict):
        raise where.error(("archs",), "must map architecture names to {choices, head}")
    for name, a in archs.items():
        if not isinstance(a, (dict, str, list)):
            raise where.error(("archs", name), "must be {choices: ..., head: ...} or a choices string")
    space = build(doc, res, width, source, where=where)
    for name in archs:
        try:
            space.parse_arch(name)
        except ArchitectureError as e:
            raise where.error(("archs", name), f"does not fit the stages: {e}") from None


def _rules(doc: dict[str, Any], where: _Where) -> tuple[int, float]:
    r = doc.get("resolution", {})
    r = {"default": r} if isinstance(r, int) else r
    w = doc.get("width", {})
    w = {"default": w} if isinstance(w, (int, float)) else w
    if not isinstance(r, dict) or set(r) - {"default", "min", "choices"}:
        raise where.error(("resolution",), "must be an integer or {default, min, choices}")
    if not isinstance(w, dict) or set(w) - {"default", "divisor", "choices"}:
        raise where.error(("width",), "must be a number or {default, divisor, choices}")
    for k, v in r.items():
        vals = v if k == "choices" else [v]
        if not isinstance(vals, list) or not all(isinstance(x, int) and x >= 1 for x in vals):
            raise where.error(("resolution", k), "must be (a list of) integers >= 1")
    for k, v in w.items():
        if k == "divisor":
            continue
        vals = v if k == "choices" else [v]
        if not isinstance(vals, list) or not all(isinstance(x, (int, float)) and 0 < x <= 4 for x in vals):
            raise where.error(("width", k), "must be (a list of) numbers in (0, 4]")
    if not isinstance(w.get("divisor", 8), int) or w.get("divisor", 8) < 1:
        raise where.error(("width", "divisor"), "must be an integer >= 1")
    return int(r.get("default", 224)), float(w.get("default", 1.0))


def _list(doc: dict[str, Any], key: str, where: _Where) -> list[Any]:
    v = doc[key]
    if not isinstance(v, list) or (key != "stem" and not v):
        raise where.error((key,), "must be a non-empty list")
    return v


def _op(op: Any, path: tuple[Any, ...], where: _Where) -> None:
    if not isinstance(op, dict) or "op" not in op:
        raise where.error(path, "must be {op: KIND, ...}")
    for k in op:
        if k not in OP_FIELDS:
            raise where.error((*path, k), f"unknown field; expected some of {', '.join(sorted(OP_FIELDS))}")
    if op["op"] not in REGISTRY:
        raise where.error((*path, "op"), f"unknown op kind {op['op']!r}; expected one of {', '.join(REGISTRY)}")
    out = op.get("out")
    if out is not None and out not in ("head", "classes") and not (isinstance(out, int) and out >= 1):
        raise where.error((*path, "out"), f"{out!r} must be channels >= 1, 'head' or 'classes'")
    if "act" in op and op["act"] not in ACTS:
        raise where.error((*path, "act"), f"unknown activation {op['act']!r}; expected one of {', '.join(ACTS)}")
    for k in ("kernel", "stride"):
        if k in op and (not isinstance(op[k], int) or op[k] < 1):
            raise where.error((*path, k), "must be an integer >= 1")


def _stage(st: Any, i: int, sets: dict[str, Any], where: _Where) -> None:
    path: tuple[Any, ...] = ("stages", i)
    if not isinstance(st, dict):
        raise where.error(path, "must be {out, layers, stride, candidates, ...}")
    for k in st:
        if k not in STAGE_FIELDS:
            raise where.error((*path, k), f"unknown field; expected some of {', '.join(sorted(STAGE_FIELDS))}")
    for k in ("out", "layers", "stride"):
        if not isinstance(st.get(k), int) or isinstance(st.get(k), bool) or st[k] < 1:
            raise where.error((*path, k), "must be an integer >= 1" if k in st else "is missing")
    cands = st.get("candidates")
    if isinstance(cands, str):
        if cands not in sets:
            raise where.error((*path, "candidates"), f"no candidate set named {cands!r} (known: "
                                                     f"{', '.join(sets) or 'none'})")
        cpath: tuple[Any, ...] = ("candidate_sets", cands)
        cands = sets[cands]
    else:
        cpath = (*path, "candidates")
    if not isinstance(cands, list) or not cands:
        raise where.error(cpath, "must be a non-empty list of candidates")
    if len(set(cands)) != len(cands):
        raise where.error(cpath, "lists a candidate twice")
    for j, c in enumerate(cands):
        try:
            decode(c)
        except CandidateError as e:
            raise where.error((*cpath, j), str(e)) from None
    if "act" in st and st["act"] not in ("relu", "relu6", "hswish", "swish"):
        raise where.error((*path, "act"), f"{st['act']!r} must be relu, relu6, hswish or swish")
    if "se" in st and (not isinstance(st["se"], (int, float)) or not 0 <= st["se"] <= 1):
        raise where.error((*path, "se"), "must be a squeeze-excite ratio in [0, 1]")
    if "se_gate" in st and st["se_gate"] not in GATES:
        raise where.error((*path, "se_gate"), "must be sigmoid or hsigmoid")
    d = st.get("depth")
    if d is not None and (not isinstance(d, list) or not d or not all(isinstance(x, int) for x in d)
                          or min(d) < 1 or max(d) != st["layers"]):
        raise where.error((*path, "depth"), f"must be a list of depths from 1 to its layers ({st['layers']})")


def build(doc: dict[str, Any], resolution: int | None = None, width: float | None = None, source: str = "",
          builtin: bool = False, where: _Where | None = None) -> SearchSpace:
    """The space of a checked definition at a resolution and width (default: the definition's)."""
    where = where or _Where(source or doc.get("name", "<space>"), None)
    r = doc.get("resolution", {})
    r = {"default": r} if isinstance(r, int) else r
    w = doc.get("width", {})
    w = {"default": w} if isinstance(w, (int, float)) else w
    res = int(resolution if resolution is not None else r.get("default", 224))
    wid = float(width if width is not None else w.get("default", 1.0))
    name = doc["name"]
    lo = int(r.get("min", MIN_RESOLUTION))
    if res < lo:
        raise ArchitectureError(f"resolution {res} is too small for space {name}; use at least {lo}")
    if "choices" in r and res not in r["choices"]:
        raise ArchitectureError(f"space {name} is defined at resolutions {', '.join(map(str, r['choices']))}, "
                                f"not {res}")
    if not 0 < wid <= 4:
        raise ArchitectureError(f"width multiplier {wid:g} is out of range; use a value in (0, 4]")
    if "choices" in w and wid not in [float(x) for x in w["choices"]]:
        raise ArchitectureError(f"space {name} is defined at widths {', '.join(f'{x:g}' for x in w['choices'])}, "
                                f"not {wid:g}")
    sets = doc.get("candidate_sets") or {}
    stages = []
    for st in doc["stages"]:
        c = st["candidates"]
        stages.append(Stage(st["out"], st["layers"], st["stride"], tuple(sets[c] if isinstance(c, str) else c),
                            st.get("act"), float(st.get("se", 0)), st.get("se_gate"),
                            tuple(st["depth"]) if st.get("depth") else None))
    archs = {}
    for n, a in (doc.get("archs") or {}).items():
        a = a if isinstance(a, dict) else {"choices": a}
        ch = a.get("choices", "")
        tokens = [t for t in re.split(r"[\s,|]+", ch.strip()) if t] if isinstance(ch, str) else list(ch)
        archs[n] = (tuple(str(t) for t in tokens), a.get("head"))

    def ops(key: str) -> tuple[OpDef, ...]:
        return tuple(OpDef(o["op"], o.get("out"), o.get("kernel", 1), o.get("stride", 1), o.get("act", ""),
                           o.get("groups", 1), o.get("padding", -1)) for o in doc[key])

    space = SearchSpace(
        name=name, stem=ops("stem"), stages=tuple(stages), head_ops=ops("head"),
        head=int(doc.get("head_channels", 0)), num_classes=int(doc.get("num_classes", 1000)), resolution=res,
        width=wid, divisor=int(w.get("divisor", 8)), in_channels=int((doc.get("input") or {}).get("channels", 3)),
        archs=archs, definition=copy.deepcopy(doc), source=source, builtin=builtin,
    )
    _check_geometry(space, where)
    return space


def _check_geometry(space: SearchSpace, where: _Where) -> None:
    """Every op of the space must exist at this resolution and width: no zero-size map, channels that divide."""
    at = f"at resolution {space.resolution}, width {space.width:g}"
    try:
        space.stem_specs()
    except ValueError as e:
        raise where.error(("stem",), f"{at}: {e}") from None
    try:
        layers = space.layers()
    except ValueError as e:
        raise where.error(("stages",), f"{at}: {e}") from None
    for layer in layers:
        st = space.stages[layer.stage - 1]
        sets = space.definition.get("candidate_sets") or {}
        cands = space.definition["stages"][layer.stage - 1]["candidates"]
        for c in st.candidates:
            j = st.candidates.index(c)
            path = ("candidate_sets", cands, j) if isinstance(cands, str) and cands in sets else \
                ("stages", layer.stage - 1, "candidates", j)
            if c not in layer.candidates:
                continue
            try:
                space.candidate_spec(layer, c)
            except (ValueError, ArchitectureError) as e:
                raise where.error(path, f"layer {layer.index} ({layer.cin}->{layer.cout} channels, "
                                        f"{layer.h}x{layer.w}) {at}: {e}") from None
        if not any(c != "zero" for c in layer.candidates):
            raise where.error(("stages", layer.stage - 1, "candidates"),
                              f"layer {layer.index} changes its shape, so it needs a candidate other than zero")
    for h in space.head_widths():
        try:
            specs = space.tail_specs(h)
        except ValueError as e:
            raise where.error(("head",), f"{at}: {e}") from None
        if any(s.output_shape[-1] < 1 for s in specs):
            raise where.error(("head",), f"{at}: leaves a zero-size map")
