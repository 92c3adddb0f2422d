"""The keys of the ProxylessNAS and Once-for-All latency tables, mapped onto the ops of a space.

Both projects key their per-phone tables (``data/public_luts/proxylessnas_mobile``, ``ofa_note10``) as::

    {type}-input:HxWxC-output:HxWxC[-expand:E-kernel:K-stride:S-idskip:0|1[-se:0|1-hs:0|1]]

with types ``Conv`` (stem), ``expanded_conv`` (an MBConv block), ``Conv_1`` (final expand), ``Conv_2`` (OFA's
feature mix), ``AvgPool2D`` and ``Logits``. ProxylessNAS' ``expand`` is the expansion ratio; OFA's is the absolute
number of mid channels. :func:`public_key_spec` finds the one op of a space that a key describes, so a table can
be imported as a LUT of that space (``proxylessnas`` at 224, ``ofa_mbv3`` at width 1.2 and the table's
resolution).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from latency_lut.errors import UnknownOpError
from latency_lut.ops import OpSpec
from latency_lut.spaces.base import SearchSpace

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


def public_key_spec(space: SearchSpace, key: str) -> OpSpec:
    """The op of ``space`` that a ProxylessNAS/OFA table key describes.

    Fixed ops are matched by kind and shapes. A block is matched among the candidates of the layers with its
    shapes and stride by mid channels, squeeze-excite, hswish and residual, then kernel. A fixed block (a layer
    with one candidate) measured at another kernel -- the ProxylessNAS table has its first MBConv1 at kernels 5
    and 7 too -- maps to that layer's block at the key's kernel. Raises :class:`UnknownOpError` when nothing in
    the space matches, ``ValueError`` for a malformed key.
    """
    f = parse_key(key)
    t = f.type
    if t == "expanded_conv":
        return _block(space, key, f)
    fixed = space.stem_specs() + space.tail_specs()
    want = {"Conv": ("conv",), "Conv_1": ("conv",), "Conv_2": ("fc", "conv"), "AvgPool2D": ("gap",),
            "Logits": ("logits", "fc")}.get(t)
    if want is None:
        raise UnknownOpError(f"{key}: type {t!r} is not a ProxylessNAS/OFA op type", [key])
    hits = [s for s in fixed if s.kind in want and (s.cin, s.h, s.w, s.cout) == (f.cin, f.h, f.w, f.cout)]
    return _one(key, hits, space)


def _block(space: SearchSpace, key: str, f: MobileKey) -> OpSpec:
    layers = [l for l in space.layers() if (l.cin, l.h, l.w, l.cout, l.stride) == (f.cin, f.h, f.w, f.cout, f.stride)]
    cands = {s.key: s for l in layers for c in range(len(l.candidates))
             if (s := space.candidate_spec(l, c)).kind == "ir"}.values()

    mid = f.expand if f.se is not None else round(f.cin * f.expand)  # OFA keys (with se/hs): absolute mid channels
    same = [s for s in cands if s.mid == mid and bool(s.hidden) == bool(f.se)
            and (s.activation == "hswish") == bool(f.hs) and s.has_residual == bool(f.idskip)]
    exact = [s for s in same if s.kernel == f.kernel]
    fixed = [l for l in layers if len(l.candidates) == 1]
    if exact or not same or not fixed:
        return _one(key, exact, space)
    # A fixed block measured at another kernel (ProxylessNAS' first MBConv1 at 5 and 7): that layer's block.
    fixed_specs = {space.candidate_spec(l, 0).key for l in fixed}
    kernels = {dataclasses.replace(s, kernel=f.kernel).key: dataclasses.replace(s, kernel=f.kernel)
               for s in same if s.key in fixed_specs}
    return _one(key, list(kernels.values()), space)


def _one(key: str, hits: list[OpSpec], space: SearchSpace) -> OpSpec:
    keys = sorted({s.key for s in hits})
    if len(keys) == 1:
        return hits[0]
    if not keys:
        raise UnknownOpError(f"{key}: no op of space {space.id} has these shapes and fields", [key])
    raise UnknownOpError(f"{key}: matches {len(keys)} ops of space {space.id}: {', '.join(keys)}", [key])


def map_public_table(space: SearchSpace, keys: Iterable[str]) -> dict[str, OpSpec]:
    """``{table key: op}`` for every key of a table; raises on the first key without exactly one op."""
    return {k: public_key_spec(space, k) for k in keys}
