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


PATTERNS: Sequence[Callable[[Chain, int], Match | None]] = (match_mb,)


def fallback_note(spec: OpSpec) -> str:
    """The breakdown note of an op priced from primitives where a runtime may fuse it with its neighbours."""
    if spec.kind in ("act", "bn", "add", "se", "shuffle", "concat", "slice") or \
            (spec.kind == "conv" and (_depthwise(spec) or spec.activation == "linear")):
        return "fallback: primitive"
    return ""
