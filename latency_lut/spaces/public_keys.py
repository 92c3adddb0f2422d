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
import re
from collections.abc import Iterable

from latency_lut.errors import UnknownOpError
from latency_lut.ops import OpSpec
from latency_lut.spaces.base import SearchSpace

_KEY = re.compile(r"^(?P<type>[A-Za-z_0-9]+?)-input:(?P<i>\d+x\d+x\d+)-output:(?P<o>\d+(?:x\d+x\d+)?)(?P<rest>.*)$")
_BLOCK_FIELDS = ("expand", "kernel", "stride", "idskip", "se", "hs")


def parse_public_key(key: str) -> dict:
    """The fields of a ProxylessNAS/OFA key: type, input (h, w, c), output (h, w, c) or classes, block fields."""
    m = _KEY.match(key)
    if not m:
        raise ValueError(f"not a ProxylessNAS/OFA latency key: {key!r}")
    ih, iw, ic = (int(v) for v in m["i"].split("x"))
    out = tuple(int(v) for v in m["o"].split("x"))
    fields: dict[str, int] = {}
    for part in filter(None, m["rest"].split("-")):
        name, _, val = part.partition(":")
        if name not in _BLOCK_FIELDS or not val.isdigit():
            raise ValueError(f"not a ProxylessNAS/OFA latency key: {key!r} (part {part!r})")
        fields[name] = int(val)
    return {"type": m["type"], "input": (ih, iw, ic), "output": out, **fields}


def public_key_spec(space: SearchSpace, key: str) -> OpSpec:
    """The op of ``space`` that a ProxylessNAS/OFA table key describes.

    Fixed ops are matched by kind and shapes. A block is matched among the candidates of the layers with its
    shapes and stride by mid channels, squeeze-excite, hswish and residual, then kernel. A fixed block (a layer
    with one candidate) measured at another kernel -- the ProxylessNAS table has its first MBConv1 at kernels 5
    and 7 too -- maps to that layer's block at the key's kernel. Raises :class:`UnknownOpError` when nothing in
    the space matches, ``ValueError`` for a malformed key.
    """
    f = parse_public_key(key)
    (h, w, cin), out = f["input"], f["output"]
    t = f["type"]
    if t == "expanded_conv":
        return _block(space, key, f)
    fixed = space.stem_specs() + space.tail_specs()
    want = {"Conv": ("conv",), "Conv_1": ("conv",), "Conv_2": ("fc", "conv"), "AvgPool2D": ("gap",),
            "Logits": ("logits", "fc")}.get(t)
    if want is None:
        raise UnknownOpError(f"{key}: type {t!r} is not a ProxylessNAS/OFA op type", [key])
    hits = [s for s in fixed if s.kind in want and (s.cin, s.h, s.w, s.cout) == (cin, h, w, out[-1])]
    return _one(key, hits, space)


def _block(space: SearchSpace, key: str, f: dict) -> OpSpec:
    (h, w, cin), out = f["input"], f["output"]
    if len(out) != 3:
        raise ValueError(f"{key}: a block's output must be HxWxC")
    stride = f.get("stride", 1)
    expand = f["expand"]
    layers = [l for l in space.layers() if (l.cin, l.h, l.w, l.cout, l.stride) == (cin, h, w, out[2], stride)]
    cands = {s.key: s for l in layers for c in range(len(l.candidates))
             if (s := space.candidate_spec(l, c)).kind == "ir"}.values()

    mid = expand if "se" in f else round(cin * expand)  # OFA keys (with se/hs) give absolute mid channels
    same = [s for s in cands if s.mid == mid and bool(s.hidden) == bool(f.get("se", 0))
            and (s.activation == "hswish") == bool(f.get("hs", 0)) and s.has_residual == bool(f.get("idskip", 0))]
    exact = [s for s in same if s.kernel == f.get("kernel")]
    fixed = [l for l in layers if len(l.candidates) == 1]
    if exact or not same or not fixed:
        return _one(key, exact, space)
    # A fixed block measured at another kernel (ProxylessNAS' first MBConv1 at 5 and 7): that layer's block.
    fixed_specs = {space.candidate_spec(l, 0).key for l in fixed}
    kernels = {dataclasses.replace(s, kernel=f["kernel"]).key: dataclasses.replace(s, kernel=f["kernel"])
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
