"""Graph rewrites before lowering: elementwise arithmetic that computes an activation becomes that activation, and
an explicit zero pad in front of a conv or pool becomes its padding."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from latency_lut.decompose.ir import Node, common_label
from latency_lut.ops import tf_same_pads

# an activation written as arithmetic runs every op of it, so it has its own key
_ARITH_FORM = {"hswish": "hswish_arith", "hsigmoid": "hsigmoid_arith"}


def _np_acts() -> dict[str, Callable[[Any], Any]]:
    def hsig(x: Any) -> Any:
        return np.clip(x / 6.0 + 0.5, 0.0, 1.0)

    def sig(x: Any) -> Any:
        return 1.0 / (1.0 + np.exp(-x))

    acts = {"relu": lambda x: np.maximum(x, 0.0), "relu6": lambda x: np.clip(x, 0.0, 6.0), "hsigmoid": hsig,
            "hswish": lambda x: x * hsig(x), "sigmoid": sig, "swish": lambda x: x * sig(x), "linear": lambda x: x}
    acts.update({arith: acts[native] for native, arith in _ARITH_FORM.items()})
    return acts


_EW = ("act", "ew", "add", "mul")


def fold_elementwise(nodes: Sequence[Node]) -> list[Node]:
    """Replace every elementwise subgraph that is a function of one tensor by the activation it computes.

    Activations written as arithmetic (``x * relu6(x + 3) / 6``, ``relu6(x + 3) / 6``, ``x * sigmoid(x)``,
    ``clamp(x, 0, 6)``, ``hardtanh(x + 3, 0, 6) / 6``, in-place or not, in torch or ONNX form) are recognized
    by *evaluating* the subgraph on a probe tensor and comparing it with every activation of the key grammar, so
    no list of spellings is needed. A subgraph that computes none of them is left alone (its arithmetic is then
    reported as unsupported by the lowering).
    """
    nodes = list(nodes)
    producer = {n.output: i for i, n in enumerate(nodes)}
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for t in n.inputs:
            consumers.setdefault(t, []).append(i)
    srcs: list[set[str]] = []
    for n in nodes:
        src: set[str] = set()
        if n.op in _EW and n.attrs.get("fn", True) is not None:
            for t in n.inputs:
                j = producer.get(t)
                src |= srcs[j] if j is not None and nodes[j].op in _EW and srcs[j] else {t}
        srcs.append(src)
    acts = _np_acts()
    probe = np.linspace(-8.0, 8.0, 1601)
    absorbed: set[int] = set()
    renamed: dict[str, str] = {}
    replaced: dict[int, Node] = {}
    for i in range(len(nodes) - 1, -1, -1):
        n = nodes[i]
        if i in absorbed or n.op not in _EW or len(srcs[i]) != 1 or (n.op == "act" and len(n.inputs) == 1):
            continue
        (x,) = srcs[i]
        region = _region(nodes, producer, i, x)
        if region is None or any(c not in region for k in region if k != i
                                 for c in consumers.get(nodes[k].output, [])):
            continue
        vals: dict[str, Any] = {x: probe}
        try:
            with np.errstate(all="ignore"):
                for k in sorted(region):
                    vals[nodes[k].output] = _eval(nodes[k], [vals[t] for t in nodes[k].inputs], acts)
        except KeyError:
            continue
        y = vals[n.output]
        name = next((a for a, f in acts.items() if np.allclose(y, f(probe), atol=1e-4, rtol=1e-4)), None)
        if name is None:
            continue
        if len(region) > 1 and name in _ARITH_FORM:
            # written as arithmetic: the runtime runs every op of it, not one fused activation
            name = _ARITH_FORM[name]
        absorbed |= region
        shape_x = nodes[producer[x]].out_shape if x in producer else n.in_shapes[0]
        label = common_label([nodes[k].name for k in sorted(region)])
        if name == "linear":
            renamed[n.output] = x
        else:
            replaced[i] = Node(label, "act", [x], n.output, [shape_x], n.out_shape, {"act": name})
    out = []
    for i, n in enumerate(nodes):
        if i in replaced:
            out.append(replaced[i])
        elif i not in absorbed:
            if renamed and any(t in renamed for t in n.inputs):
                n = Node(n.name, n.op, [_follow(renamed, t) for t in n.inputs], n.output, n.in_shapes, n.out_shape,
                         n.attrs)
            out.append(n)
    return out


def _follow(renamed: dict[str, str], t: str) -> str:
    while t in renamed:
        t = renamed[t]
    return t


def _region(nodes: Sequence[Node], producer: dict[str, int], i: int, x: str) -> set[int] | None:
    region: set[int] = set()
    stack = [i]
    while stack:
        k = stack.pop()
        if k in region:
            continue
        if nodes[k].op not in _EW or len(region) > 16:
            return None
        region.add(k)
        stack.extend(producer[t] for t in nodes[k].inputs if t != x)
    return region


def _eval(n: Node, args: list[Any], acts: dict[str, Callable[[Any], Any]]) -> Any:
    if n.op == "act":
        return acts[n.attrs["act"]](args[0])
    if n.op == "add":
        return args[0] + args[1]
    if n.op == "mul":
        return args[0] * args[1]
    return n.attrs["fn"](*args)


def fold_pads(nodes: Sequence[Node]) -> list[Node]:
    """An explicit zero pad in front of a conv or pool (TF "same" ports, ``F.pad``) becomes that op's padding:
    symmetric as its ``padding``, TF's asymmetric split as ``tf``."""
    nodes = list(nodes)
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for t in n.inputs:
            consumers.setdefault(t, []).append(i)
    drop: set[int] = set()
    for i, n in enumerate(nodes):
        if n.op != "pad":
            continue
        users = consumers.get(n.output, [])
        if len(users) != 1 or nodes[users[0]].op not in ("conv", "maxpool", "avgpool"):
            continue
        c = nodes[users[0]]
        if c.attrs.get("padding", 0) != 0 or c.attrs.get("tf") or (c.op != "conv" and n.attrs["pads"] != (0,) * 4
                                                                     and c.op == "maxpool"):
            continue
        top, bottom, left, right = n.attrs["pads"]
        k, st, d = c.attrs["kernel"], c.attrs["stride"], c.attrs.get("dilation", 1)
        h, w = n.in_shapes[0][2:]
        attrs = dict(c.attrs)
        if top == bottom == left == right:
            attrs["padding"] = top
        elif (top, bottom) == tf_same_pads(h, k, st, d) and (left, right) == tf_same_pads(w, k, st, d):
            attrs["tf"] = True
        else:
            continue
        nodes[users[0]] = Node(c.name, c.op, [n.inputs[0]], c.output, n.in_shapes, c.out_shape, attrs)
        drop.add(i)
    return [n for i, n in enumerate(nodes) if i not in drop]
