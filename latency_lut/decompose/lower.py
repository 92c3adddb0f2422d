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
from dataclasses import dataclass

from latency_lut.decompose.fold import fold_elementwise, fold_pads
from latency_lut.decompose.ir import DecomposedOp, ModelError, Node, UnsupportedLayerError, common_label
from latency_lut.decompose.units import fallback_note, match_unit
from latency_lut.ops import OpSpec, mix_splits


# ------------------------------------------------------------------------------
@dataclass
class _Prim:
    label: str
    spec: OpSpec
    inputs: list[str]
    output: str
    members: list[str]
    start: int = 0  # a slice's first channel


def lower(nodes: Sequence[Node], known: Callable[[str], bool] = lambda k: False) -> list[DecomposedOp]:
    """The LUT ops of a graph; ``known(key)`` tells whether the LUT holds a key (used to prefer block entries)."""
    nodes = fold_pads(fold_elementwise(nodes))
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
        prims.append(_Prim(n.name, spec, list(n.inputs), nodes[last].output, members, n.attrs.get("start", 0)))
    if not prims and not bad:
        raise ModelError("the model has no layers to price (it computes nothing from its input)")
    if bad:
        raise UnsupportedLayerError(
            f"{len(bad)} layer(s) have no LUT op kind: {'; '.join(bad[:10])}{' ...' if len(bad) > 10 else ''}; "
            "supported: conv (any groups, dilation, padding), linear, batch norm, ReLU/ReLU6/hardswish/hardsigmoid/"
            "sigmoid/SiLU (as modules, functions or arithmetic), max/avg/global pooling, squeeze-excite, channel "
            "shuffle, chunk/split, residual add, channel concat, zero pad before a conv or pool", bad,
        )
    return [DecomposedOp(p.label, describe(p.spec), p.spec, tuple(p.members), fallback_note(p.spec))
            for p in _fuse_blocks(_merge_mixed(prims), known)]


class _Unsupported(Exception):
    pass


def _lower_one(n: Node, i: int, nodes: Sequence[Node], sole: Callable[[int, str], int | None],
               fuse_act: Callable[[int], tuple[str, int]], used: set[int]) -> tuple[OpSpec, int]:
    op, a = n.op, n.attrs
    if op == "unsupported":
        raise _Unsupported(a["what"])
    if op == "ew":
        raise _Unsupported(a["what"])
    if op == "pad":
        raise _Unsupported(f"explicit pad {a['pads']} not in front of a conv or pool")
    if op == "slice":
        if len(n.in_shapes[0]) != 4:
            raise _Unsupported("slice of a non-image tensor")
        _, c, h, w = n.in_shapes[0]
        return OpSpec("slice", c, h, w, a["stop"] - a["start"]), i
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
                      padding=-1 if a.get("tf") else a["padding"], dilation=a.get("dilation", 1),
                      tf=bool(a.get("tf"))), last
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
        _, c, h, w = n.in_shapes[0]
        tf = bool(a.get("tf"))
        return OpSpec(op, c, h, w, kernel=a["kernel"], stride=a["stride"], padding=-1 if tf else a["padding"],
                      tf=tf, ceil=bool(a.get("ceil_mode"))), i
    if op == "cat":
        if len(n.inputs) < 2 or len(n.out_shape) != 4:
            raise _Unsupported("concat of other than image tensors along channels")
        # N-way concat: priced as the first part joined by the rest (the same bytes written)
        _, c, h, w = n.in_shapes[0]
        return OpSpec("concat", c, h, w, n.out_shape[1]), i
    if op == "shuffle":
        _, c, h, w = n.out_shape
        return OpSpec("shuffle", c, h, w, groups=a["groups"]), i
    raise _Unsupported(f"op {op}")  # pragma: no cover - front ends only emit the ops above


def _find_se(nodes: Sequence[Node], consumers: dict[str, list[int]], producer: dict[str, int], used: set[int],
             bad: list[str]) -> dict[int, _Prim]:
    """Squeeze-excite subgraphs, keyed by the index of their final multiply."""
    found: dict[int, _Prim] = {}
    for i, n in enumerate(nodes):
        if n.op != "mul" or len(n.inputs) != 2:
            continue
        for x, g in (n.inputs, n.inputs[::-1]):
            gi = producer.get(g)
            if gi is None or len(n.in_shapes[0]) != 4:
                continue
            members = _se_members(nodes, consumers, producer, x, gi, i)
            if members is None:
                continue
            convs = [k for k in members if nodes[k].op in ("conv", "linear")]
            acts = [nodes[k].attrs["act"] for k in members if nodes[k].op == "act"]
            xs = nodes[producer[x]].out_shape if x in producer else n.out_shape
            if len(xs) != 4:
                continue
            gate, inner = (acts[-1], acts[:-1]) if acts else ("", [])
            if gate not in ("sigmoid", "hsigmoid", "hsigmoid_arith") or len(inner) > 1:
                bad.append(f"{n.name} (squeeze-excite with activations {acts}; supported: one activation inside, "
                           "sigmoid or hardsigmoid gate)")
                used.update(members)
                used.add(i)
                break
            _, c, h, w = xs
            spec = OpSpec("se", c, h, w, hidden=nodes[convs[0]].attrs["cout"], act=gate,
                          se_act=inner[0] if inner else "linear")
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


def _merge_mixed(prims: list[_Prim]) -> list[_Prim]:
    """split -> one conv per part -> concat [-> BN + act] is one mixed-kernel conv (MixNet's MixedConv2d)."""
    prod = {p.output: i for i, p in enumerate(prims)}
    users: dict[str, list[int]] = {}
    for i, p in enumerate(prims):
        for t in p.inputs:
            users.setdefault(t, []).append(i)

    def sole(i: int) -> int | None:
        u = users.get(prims[i].output, [])
        return u[0] if len(u) == 1 else None

    drop: set[int] = set()
    put: dict[int, _Prim] = {}
    for ci, cat in enumerate(prims):
        if cat.spec.kind != "concat":
            continue
        convs = [prod.get(t) for t in cat.inputs]
        if any(q is None or prims[q].spec.kind != "conv" or sole(q) != ci for q in convs):
            continue
        slices = [prod.get(prims[q].inputs[0]) for q in convs]  # type: ignore[index]
        if any(s_ is None or prims[s_].spec.kind != "slice" for s_ in slices):
            continue
        sl = [prims[s_] for s_ in slices]  # type: ignore[index]
        parts = [prims[q].spec for q in convs]  # type: ignore[index]
        x = sl[0].inputs[0]
        c = sl[0].spec.cin
        bounds = [(p.start, p.start + p.spec.cout) for p in sl]
        n = len(parts)
        want = mix_splits(c, n)
        if any(p.inputs[0] != x for p in sl) or [b - a for a, b in bounds] != want or \
                [a for a, _ in bounds] != [sum(want[:i]) for i in range(n)]:
            continue
        dw = all(p.groups == p.cin == p.cout for p in parts)
        dense = all(p.groups == 1 and p.kernel == 1 for p in parts) and \
            [p.cout for p in parts] == mix_splits(cat.spec.cout, n)
        same = {(p.stride, p.dilation, p.tf, p.padding < 0, p.activation) for p in parts}
        if not (dw or dense) or len(same) != 1:
            continue
        stride, dil, tf, _, act = same.pop()
        members = [m for i in (*slices, *convs, ci) for m in prims[i].members]  # type: ignore[misc]
        end, out = ci, cat.output
        b = sole(ci)
        if act == "linear" and b is not None and prims[b].spec.kind == "bn":
            act, end, out = prims[b].spec.activation, b, prims[b].output
            members += prims[b].members
        try:
            spec = OpSpec("conv", c, sl[0].spec.h, sl[0].spec.w, cat.spec.cout, stride=stride, groups=c if dw else 1,
                          act=act, dilation=dil, tf=tf, mix=tuple(p.kernel for p in parts))
        except ValueError:
            continue
        group = {*slices, *convs, ci, end}
        drop |= group  # type: ignore[arg-type]
        put[end] = _Prim(common_label([prims[q].label for q in convs]), spec, [x], out, members)  # type: ignore[index]
    return [put[i] if i in put else p for i, p in enumerate(prims) if i in put or i not in drop]


def _fuse_blocks(prims: list[_Prim], known: Callable[[str], bool]) -> list[_Prim]:
    """Price chains that are whole blocks (the registry's patterns, ``decompose.units``) as one unit each; an FBNet
    block found in any code has the space's own key."""
    out: list[_Prim] = []
    users: dict[str, list[int]] = {}
    for i, p in enumerate(prims):
        for t in p.inputs:
            users.setdefault(t, []).append(i)
    chain = _PrimChain(prims, users)
    i = 0
    while i < len(prims):
        unit = match_unit(chain, i)
        if unit is not None:
            spec, end = unit
            members = [m for p in prims[i:end] for m in p.members]
            out.append(_Prim(common_label([p.label for p in prims[i:end]]), spec, prims[i].inputs,
                             prims[end - 1].output, members))
            i = end
            continue
        out.append(_skip_alias(prims[i], known))
        i += 1
    return out


class _PrimChain:
    """The lowering's primitive ops as the :class:`latency_lut.decompose.units.Chain` that block patterns read."""

    def __init__(self, prims: list[_Prim], users: dict[str, list[int]]) -> None:
        self.prims, self.users_of = prims, users

    def __len__(self) -> int:
        return len(self.prims)

    def spec(self, j: int) -> OpSpec:
        return self.prims[j].spec

    def next(self, j: int) -> int | None:
        u = self.users_of.get(self.prims[j].output, [])
        return u[0] if len(u) == 1 and u[0] == j + 1 else None

    def inputs(self, j: int) -> list[str]:
        return self.prims[j].inputs

    def output(self, j: int) -> str:
        return self.prims[j].output

    def start(self, j: int) -> int:
        return self.prims[j].start

    def users(self, j: int) -> list[int]:
        return self.users_of.get(self.prims[j].output, [])

    def adds(self, j: int, start: int, last: int) -> bool:
        p = self.prims[j]
        return p.spec.kind == "add" and p.spec.activation == "linear" and \
            sorted(p.inputs) == sorted([self.prims[last].output, self.prims[start].inputs[0]])


def _skip_alias(p: _Prim, known: Callable[[str], bool]) -> _Prim:
    s = p.spec
    if s.kind == "conv" and s.kernel == 1 and s.groups == 1 and s.activation == "relu" and s.padding < 0 \
            and not known(s.key):
        alt = OpSpec("skip", s.cin, s.h, s.w, s.cout, stride=s.stride)
        if known(alt.key):
            return _Prim(p.label, alt, p.inputs, p.output, p.members)
    return p


def describe(spec: OpSpec) -> str:
    """A short human description of an op for breakdown tables (the kind's ``label``)."""
    label = spec.spec_kind.label
    return label(spec) if label else spec.kind
