"""Decompose a whole model (a torch ``nn.Module`` or an ONNX file) into LUT ops.

Both front ends produce the same small graph of layers (:class:`Node`): conv, linear, bn, act, add, mul, gap,
maxpool, avgpool, cat, shuffle, and ``block`` for a block of the search space. Shape-only ops (view, reshape,
flatten, dropout, identity, expand, contiguous) are aliases of their input and cost nothing. One lowering pass then
turns the graph into op specs of the key grammar (``latency_lut.ops``):

- conv [+ bn] [+ act] -> one ``conv`` op (BN is folded into the conv by every deployment runtime); linear [+ act]
  -> ``fc``; pool -> conv 1x1 -> act -> conv 1x1 -> gate -> mul -> one ``se`` op; x * sigmoid(x) -> ``swish``;
  reshape -> transpose(1, 2) -> reshape of a 5-D tensor -> ``shuffle``; a two-tensor add [+ act] -> ``add``.
- A block of the search space (an ``InvertedResidual`` module) is one ``ir`` op: its inner convs are never
  counted as well. A graph without module boundaries (ONNX, or someone else's code) has its
  conv1x1 -> [shuffle] -> depthwise -> conv1x1 [-> add] chains priced as one ``ir`` op when the LUT holds that
  block, and as its primitive ops otherwise, so the same work is never counted twice.
- A 1x1 conv + BN + ReLU is the space's ``skip`` projection; it takes the skip entry when the LUT has no conv entry.

Anything else is an :class:`UnsupportedLayerError` naming every such layer; nothing is ever priced as zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latency_lut.errors import LatencyLutError
from latency_lut.ops import OpSpec


class UnsupportedLayerError(LatencyLutError):
    """A model contains layers that have no LUT op kind; the message names them."""

    def __init__(self, message: str, layers: list[str] | None = None) -> None:
        super().__init__(message)
        self.layers = list(layers or [])


class ModelError(LatencyLutError):
    """A model that cannot be traced, loaded or shape-inferred."""


@dataclass
class Node:
    """One layer of a model: a normalized op, its tensor inputs and output, their shapes (batch 1)."""

    name: str
    op: str
    inputs: list[str]
    output: str
    in_shapes: list[tuple[int, ...]]
    out_shape: tuple[int, ...]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DecomposedOp:
    """One priced unit of a model: where it comes from (label), a short description, and its LUT op."""

    label: str
    desc: str
    spec: OpSpec
    members: tuple[str, ...] = ()


ACT_NAMES = ("relu", "relu6", "hswish", "hsigmoid", "sigmoid", "swish")


# ---- lowering: graph -> LUT ops ------------------------------------------------------------------------------
@dataclass
class _Prim:
    label: str
    spec: OpSpec
    inputs: list[str]
    output: str
    members: list[str]


def lower(nodes: Sequence[Node], known: Callable[[str], bool] = lambda k: False) -> list[DecomposedOp]:
    """The LUT ops of a graph; ``known(key)`` tells whether the LUT holds a key (used to prefer block entries)."""
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for t in n.inputs:
            consumers.setdefault(t, []).append(i)
    producer = {n.output: i for i, n in enumerate(nodes)}
    used: set[int] = set()
    prims: list[_Prim] = []
    bad: list[str] = []
    se_at = _find_se(nodes, consumers, producer, used, bad)

    def sole(i: int, op: str) -> int | None:
        c = consumers.get(nodes[i].output, [])
        return c[0] if len(c) == 1 and nodes[c[0]].op == op and c[0] not in used else None

    def fuse_act(i: int) -> tuple[str, int]:
        j = sole(i, "act")
        if j is None:
            return "linear", i
        used.add(j)
        return nodes[j].attrs["act"], j

    for i, n in enumerate(nodes):
        if i in used:
            continue
        used.add(i)
        if i in se_at:
            prims.append(se_at[i])
            continue
        before = set(used)
        try:
            spec, last = _lower_one(n, i, nodes, sole, fuse_act, used)
        except _Unsupported as e:
            bad.append(f"{n.name} ({e})")
            continue
        members = [n.name] + [nodes[k].name for k in sorted(used - before)]
        prims.append(_Prim(n.name, spec, list(n.inputs), nodes[last].output, members))
    if bad:
        raise UnsupportedLayerError(
            f"{len(bad)} layer(s) have no LUT op kind: {'; '.join(bad[:10])}{' ...' if len(bad) > 10 else ''}; "
            "supported: conv (any groups), linear, batch norm, ReLU/ReLU6/hardswish/hardsigmoid/sigmoid/SiLU, "
            "max/avg/global pooling, squeeze-excite, channel shuffle, residual add, channel concat", bad,
        )
    return [DecomposedOp(p.label, describe(p.spec), p.spec, tuple(p.members)) for p in _fuse_blocks(prims, known)]


class _Unsupported(Exception):
    pass


def _lower_one(n: Node, i: int, nodes: Sequence[Node], sole: Callable[[int, str], int | None],
               fuse_act: Callable[[int], tuple[str, int]], used: set[int]) -> tuple[OpSpec, int]:
    op, a = n.op, n.attrs
    if op == "unsupported":
        raise _Unsupported(a["what"])
    if op == "block":
        return a["spec"], i
    if op in ("conv", "linear"):
        last = i
        b = sole(i, "bn")
        if b is not None:
            used.add(b)
            last = b
        act, j = fuse_act(last)
        last = max(last, j)
        if op == "linear":
            return OpSpec("fc", a["cin"], cout=a["cout"], act=act), last
        _, c, h, w = n.in_shapes[0]
        return OpSpec("conv", c, h, w, a["cout"], a["kernel"], a["stride"], groups=a["groups"], act=act,
                      padding=a["padding"]), last
    if op == "bn":
        if len(n.in_shapes[0]) != 4:
            raise _Unsupported("batch norm on a non-image tensor outside a linear layer")
        act, j = fuse_act(i)
        _, c, h, w = n.in_shapes[0]
        return OpSpec("bn", c, h, w, act=act), j
    if op == "act":
        if len(n.out_shape) != 4:
            # An activation of a vector (after a linear layer that has other consumers) is priced as 1x1 image.
            return OpSpec("act", n.out_shape[-1], 1, 1, act=n.attrs["act"]), i
        _, c, h, w = n.out_shape
        return OpSpec("act", c, h, w, act=a["act"]), i
    if op == "add":
        if len(n.inputs) != 2 or n.in_shapes[0] != n.in_shapes[1] or len(n.out_shape) != 4:
            raise _Unsupported("add of tensors of different shapes (broadcasting)")
        act, j = fuse_act(i)
        _, c, h, w = n.out_shape
        return OpSpec("add", c, h, w, act=act), j
    if op == "mul":
        raise _Unsupported("elementwise multiply outside a squeeze-excite or swish")
    if op == "gap":
        _, c, h, w = n.in_shapes[0]
        return OpSpec("gap", c, h, w), i
    if op in ("maxpool", "avgpool"):
        if a.get("ceil_mode"):
            raise _Unsupported("pooling with ceil_mode")
        _, c, h, w = n.in_shapes[0]
        return OpSpec(op, c, h, w, kernel=a["kernel"], stride=a["stride"], padding=a["padding"]), i
    if op == "cat":
        if len(n.inputs) != 2 or len(n.out_shape) != 4:
            raise _Unsupported("concat of other than two image tensors along channels")
        _, c, h, w = n.in_shapes[0]
        return OpSpec("concat", c, h, w, n.out_shape[1]), i
    if op == "shuffle":
        _, c, h, w = n.out_shape
        return OpSpec("shuffle", c, h, w, groups=a["groups"]), i
    raise _Unsupported(f"op {op}")  # pragma: no cover - front ends only emit the ops above


def _find_se(nodes: Sequence[Node], consumers: dict[str, list[int]], producer: dict[str, int], used: set[int],
             bad: list[str]) -> dict[int, _Prim]:
    """Squeeze-excite subgraphs and x * sigmoid(x) (swish), keyed by the index of their final multiply."""
    found: dict[int, _Prim] = {}
    for i, n in enumerate(nodes):
        if n.op != "mul" or len(n.inputs) != 2:
            continue
        for x, g in (n.inputs, n.inputs[::-1]):
            gi = producer.get(g)
            if gi is None or len(n.in_shapes[0]) != 4:
                continue
            if nodes[gi].op == "act" and nodes[gi].attrs["act"] == "sigmoid" and nodes[gi].inputs == [x] \
                    and consumers.get(g) == [i]:
                _, c, h, w = nodes[producer[x]].out_shape if x in producer else n.out_shape
                spec = OpSpec("act", c, h, w, act="swish")
                found[i] = _Prim(n.name, spec, [x], n.output, [nodes[gi].name, n.name])
                used.add(gi)
                break
            members = _se_members(nodes, consumers, producer, x, gi, i)
            if members is None:
                continue
            convs = [k for k in members if nodes[k].op in ("conv", "linear")]
            acts = [nodes[k].attrs["act"] for k in members if nodes[k].op == "act"]
            xs = nodes[producer[x]].out_shape if x in producer else n.out_shape
            if len(xs) != 4:
                continue
            gate, inner = (acts[-1], acts[:-1]) if acts else ("", [])
            if gate not in ("sigmoid", "hsigmoid") or inner != ["relu"]:
                bad.append(f"{n.name} (squeeze-excite with activations {acts}; supported: relu inside, "
                           "sigmoid or hardsigmoid gate)")
                used.update(members)
                used.add(i)
                break
            _, c, h, w = xs
            spec = OpSpec("se", c, h, w, hidden=nodes[convs[0]].attrs["cout"], act=gate)
            found[i] = _Prim(n.name, spec, [x], n.output, [nodes[k].name for k in members] + [n.name])
            used.update(members)
            break
    return found


def _se_members(nodes: Sequence[Node], consumers: dict[str, list[int]], producer: dict[str, int], x: str,
                gi: int, mul: int) -> list[int] | None:
    """The nodes between tensor ``x`` and the gate node ``gi`` if they form pool -> 2 x (conv|linear) -> acts."""
    members: set[int] = set()
    stack = [gi]
    while stack:
        k = stack.pop()
        if k in members:
            continue
        members.add(k)
        if nodes[k].op not in ("gap", "conv", "linear", "act") or len(members) > 8:
            return None
        for t in nodes[k].inputs:
            if t == x:
                if nodes[k].op != "gap":
                    return None
                continue
            if t not in producer:
                return None
            stack.append(producer[t])
    order = sorted(members)
    if sum(nodes[k].op == "gap" for k in order) != 1 or sum(nodes[k].op in ("conv", "linear") for k in order) != 2:
        return None
    for k in order:  # nothing inside may feed anything outside
        if any(c not in members and c != mul for c in consumers.get(nodes[k].output, [])):
            return None
    if any(nodes[k].op == "conv" and nodes[k].attrs["kernel"] != 1 for k in order):
        return None
    return order


def _fuse_blocks(prims: list[_Prim], known: Callable[[str], bool]) -> list[_Prim]:
    """Price chains that are whole blocks of the space with their block entry, when the LUT has it."""
    out: list[_Prim] = []
    users: dict[str, list[int]] = {}
    for i, p in enumerate(prims):
        for t in p.inputs:
            users.setdefault(t, []).append(i)
    i = 0
    while i < len(prims):
        fused = _match_ir(prims, i, users)
        if fused is not None and known(fused[0].spec.key):
            out.append(fused[0])
            i = fused[1]
            continue
        out.append(_skip_alias(prims[i], known))
        i += 1
    return out


def _match_ir(prims: list[_Prim], i: int, users: dict[str, list[int]]) -> tuple[_Prim, int] | None:
    """conv1x1(g, relu) -> [shuffle g] -> dw conv(k, s, relu) -> conv1x1(g, linear) [-> add input] at ``i``."""
    def nxt(j: int) -> int | None:
        u = users.get(prims[j].output, [])
        return u[0] if len(u) == 1 and u[0] == j + 1 else None

    a = prims[i].spec
    if a.kind != "conv" or a.kernel != 1 or a.stride != 1 or a.activation != "relu" or a.padding >= 0:
        return None
    g, mid, j = a.groups, a.cout, nxt(i)
    if j is not None and g > 1 and prims[j].spec.kind == "shuffle" and prims[j].spec.groups == g:
        j = nxt(j)
    elif g > 1:
        return None
    if j is None:
        return None
    b = prims[j].spec
    if b.kind != "conv" or b.groups != mid or b.cin != mid or b.cout != mid or b.activation != "relu" \
            or b.padding >= 0:
        return None
    k = nxt(j)
    if k is None:
        return None
    c = prims[k].spec
    if c.kind != "conv" or c.kernel != 1 or c.stride != 1 or c.groups != g or c.activation != "linear" \
            or c.cin != mid:
        return None
    residual = b.stride == 1 and a.cin == c.cout
    end = k + 1
    if residual:
        if end >= len(prims) or prims[end].spec.kind != "add" or prims[end].spec.activation != "linear" \
                or sorted(prims[end].inputs) != sorted([prims[k].output, prims[i].inputs[0]]):
            return None
        end += 1
    e = mid / a.cin
    exp: float = int(e) if e.is_integer() else round(e, 4)
    try:
        spec = OpSpec("ir", a.cin, a.h, a.w, c.cout, kernel=b.kernel, stride=b.stride, expansion=exp, groups=g)
    except ValueError:
        return None
    if spec.mid != mid:
        return None
    members = [m for p in prims[i:end] for m in p.members]
    return _Prim(_common_label([p.label for p in prims[i:end]]), spec, prims[i].inputs, prims[end - 1].output,
                 members), end


def _skip_alias(p: _Prim, known: Callable[[str], bool]) -> _Prim:
    s = p.spec
    if s.kind == "conv" and s.kernel == 1 and s.groups == 1 and s.activation == "relu" and s.padding < 0 \
            and not known(s.key):
        alt = OpSpec("skip", s.cin, s.h, s.w, s.cout, stride=s.stride)
        if known(alt.key):
            return _Prim(p.label, alt, p.inputs, p.output, p.members)
    return p


def _common_label(labels: Sequence[str]) -> str:
    parts = [lab.replace("/", ".").strip(".").split(".") for lab in labels]
    common: list[str] = []
    for tokens in zip(*parts):
        if len(set(tokens)) != 1:
            break
        common.append(tokens[0])
    return ".".join(common) or labels[0]


def describe(spec: OpSpec) -> str:
    """A short human description of an op for breakdown tables."""
    k = spec.kind
    if k == "conv":
        kind = "dwconv" if spec.groups == spec.cin == spec.cout and spec.groups > 1 else "conv"
        g = f" g{spec.groups}" if spec.groups > 1 and kind == "conv" else ""
        return f"{kind}{spec.kernel}x{spec.kernel}/{spec.stride}{g} {spec.activation}"
    if k == "ir":
        return f"ir k{spec.kernel} e{spec.expansion:g}" + (f" g{spec.groups}" if spec.groups > 1 else "")
    if k == "fc":
        return "linear" + (f" {spec.act}" if spec.act else "")
    if k == "se":
        return f"se {spec.activation}"
    if k in ("maxpool", "avgpool"):
        return f"{k}{spec.kernel}x{spec.kernel}/{spec.stride}"
    if k in ("act", "bn", "add"):
        return f"{k} {spec.activation}" if spec.activation != "linear" or k == "act" else k
    return k


# ---- torch front end ------------------------------------------------------------------------------------------
def decompose_module(model: Any, input_shape: tuple[int, ...],
                     known: Callable[[str], bool] = lambda k: False) -> list[DecomposedOp]:
    """The LUT ops of a torch module run on one input of ``input_shape`` (NCHW, batch 1)."""
    from latency_lut.decompose_torch import torch_graph

    if len(input_shape) < 2 or input_shape[0] != 1:
        raise ModelError(f"input shape {tuple(input_shape)} must have batch 1, e.g. (1, 3, 224, 224)")
    return lower(torch_graph(model, input_shape), known)


def decompose_onnx(path: str | Path, known: Callable[[str], bool] = lambda k: False) -> list[DecomposedOp]:
    """The LUT ops of an ONNX model file (fixed input shape; a symbolic batch dimension is taken as 1)."""
    from latency_lut.decompose_onnx import onnx_graph

    return lower(onnx_graph(Path(path)), known)

