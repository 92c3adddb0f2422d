"""Block-level units: chains of primitive ops that a runtime executes as one piece, priced as one LUT entry.

Timed alone, every conv of a block pays its own runtime call and layout reorders, which a whole network does not
pay; a block timed as one unit pays what the network pays. Each pattern here reads a chain of primitive ops (the
output of the lowering in ``latency_lut.decompose``) and returns the one op spec of the unit it forms, or None.
A pattern is one function; its op kind (key grammar in ``latency_lut.ops``, module in ``latency_lut.blocks``) is
defined once, so a block registry can hold each of them as one kind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from latency_lut.ops import OpSpec


class Chain(Protocol):
    """The primitive ops of a model in order, with their data flow."""

    def __len__(self) -> int: ...
    def spec(self, j: int) -> OpSpec: ...
    def next(self, j: int) -> int | None:
        """``j + 1`` when op j's output feeds op j + 1 and nothing else; else None."""
    def adds(self, j: int, start: int, last: int) -> bool:
        """Op j is a plain add of op ``last``'s output and op ``start``'s input (a residual)."""
    def inputs(self, j: int) -> list[str]: ...
    def output(self, j: int) -> str: ...
    def start(self, j: int) -> int:
        """The first channel a slice op takes."""
    def users(self, j: int) -> list[int]: ...


Match = tuple[OpSpec, int]  # the unit's spec, and the index just past its last op


def _plain(s: OpSpec) -> bool:
    return s.kind == "conv" and s.padding < 0 and s.dilation == 1 and not s.tf


def _pointwise(s: OpSpec) -> bool:
    """A 1x1 conv, whole or split into equal parts (MixNet's grouped 1x1)."""
    return _plain(s) and s.kernel == 1 and s.stride == 1 and s.groups == 1 and set(s.mix) <= {1}


def _parts(s: OpSpec) -> int:
    return len(s.mix) or 1


def _depthwise(s: OpSpec, channels: int | None = None) -> bool:
    return s.kind == "conv" and s.padding < 0 and s.groups == s.cin == s.cout > 1 and \
        (channels is None or s.cin == channels)


def match_mb(ch: Chain, i: int) -> Match | None:
    """[1x1 conv + act] -> KxK depthwise + act -> [squeeze-excite] -> 1x1 conv (linear) [-> residual add]."""
    a = ch.spec(i)
    expand, j = 0, i
    if _pointwise(a) and a.activation != "linear":
        expand, nxt = a.cout, ch.next(i)
        if nxt is None:
            return None
        j = nxt
    b = ch.spec(j)
    if not _depthwise(b, expand or None) or (expand and b.activation != a.activation):
        return None
    mid, act = b.cout, b.activation
    k = ch.next(j)
    if k is None:
        return None
    c = ch.spec(k)
    hidden, gate, se_act = 0, "", ""
    if c.kind == "se" and c.cin == mid and (c.h, c.w) == b.out_hw:
        hidden, gate, se_act = c.hidden, c.activation, c.se_act or "relu"
        k = ch.next(k)
        if k is None:
            return None
        c = ch.spec(k)
    if not (_pointwise(c) and c.activation == "linear" and c.cin == mid):
        return None
    end = k + 1
    cin = a.cin if expand else b.cin
    residual = b.stride == 1 and cin == c.cout and end < len(ch) and ch.adds(end, i, k)
    try:
        spec = OpSpec("mb", cin, a.h, a.w, c.cout, b.kernel, b.stride, act=act, expand=expand, hidden=hidden,
                      gate=gate, se_act=se_act if hidden else "", dilation=b.dilation, tf=b.tf,
                      nores=not residual, mix=b.mix, groups=_parts(a) if expand else 1, proj_groups=_parts(c))
    except ValueError:
        return None
    return spec, end + (1 if residual else 0)


def match_shufflev2(ch: Chain, i: int) -> Match | None:
    """A ShuffleNetV2 unit: split in halves, one half through 1x1 + ReLU, depthwise, 1x1 + ReLU, concat, shuffle 2
    (stride 1); or two branches on the whole input, depthwise s2 -> 1x1 + ReLU and 1x1 + ReLU -> depthwise s2 ->
    1x1 + ReLU, concat, shuffle 2 (stride 2)."""
    if i + 6 >= len(ch):
        return None
    s = [ch.spec(j) for j in range(i, i + 7)]

    def pw_relu(t: OpSpec) -> bool:
        return _pointwise(t) and t.activation == "relu"

    def feeds(a: int, b: int) -> bool:  # op i+a's output goes to op i+b only
        return ch.users(i + a) == [i + b]

    def branch(a: int, k: int, stride: int) -> bool:  # 1x1 + ReLU -> dw (linear) -> 1x1 + ReLU at i+a
        return pw_relu(s[a]) and _depthwise(s[a + 1], s[a].cout) and s[a + 1].activation == "linear" and \
            s[a + 1].kernel == k and s[a + 1].stride == stride and pw_relu(s[a + 2]) and \
            feeds(a, a + 1) and feeds(a + 1, a + 2)

    cat, shuf = s[5], s[6]
    if cat.kind != "concat" or shuf.kind != "shuffle" or shuf.groups != 2 or not feeds(5, 6):
        return None
    if s[0].kind == "slice" and s[1].kind == "slice":  # stride 1
        x, c = ch.inputs(i)[0], s[0].cin
        half = c // 2
        if ch.inputs(i + 1)[0] != x or s[0].cout != half or s[1].cout != c - half or ch.start(i) != 0 or \
                ch.start(i + 1) != half or ch.inputs(i + 2) != [ch.output(i + 1)] or not branch(2, s[3].kernel, 1):
            return None
        if ch.inputs(i + 5) != [ch.output(i), ch.output(i + 4)] or not (feeds(0, 5) and feeds(4, 5)):
            return None
        spec = OpSpec("shufflev2", c, s[0].h, s[0].w, c, s[3].kernel, 1)
    else:  # stride 2
        d, p = s[0], s[1]
        x = ch.inputs(i)[0]
        if not (_depthwise(d) and d.activation == "linear" and d.stride == 2 and pw_relu(p) and feeds(0, 1)):
            return None
        if ch.inputs(i + 2) != [x] or not branch(2, d.kernel, 2) or not (feeds(1, 5) and feeds(4, 5)) or \
                ch.inputs(i + 5) != [ch.output(i + 1), ch.output(i + 4)] or p.cout != s[4].cout:
            return None
        spec = OpSpec("shufflev2", d.cin, d.h, d.w, 2 * p.cout, d.kernel, 2)
    return spec, i + 7


PATTERNS: Sequence[Callable[[Chain, int], Match | None]] = (match_mb, match_shufflev2)


def fallback_note(spec: OpSpec) -> str:
    """The breakdown note of an op priced from primitives where a runtime may fuse it with its neighbours."""
    if spec.kind in ("act", "bn", "add", "se", "shuffle", "concat", "slice") or \
            (spec.kind == "conv" and (_depthwise(spec) or spec.activation == "linear")):
        return "fallback: primitive"
    return ""
