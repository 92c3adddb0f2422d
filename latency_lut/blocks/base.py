"""What a block kind is, and the registry that holds every kind (no torch here).

A :class:`Kind` is everything the toolkit knows about one kind of benchmarkable unit: the fields of its key and
their grammar (:class:`Token`), the rules its fields obey, its FLOPs and parameter count, how to build its torch
module, and a slot for the graph pattern that recognizes it inside a foreign model. ``latency_lut.ops.OpSpec``
asks the registry for all of it, so adding a kind is one new module of this package (see ``blocks/__init__.py``).

The functions of a kind receive the op spec (an ``OpSpec``) and read its fields; they never import ``ops``, which
sits above this package.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DTYPES = ("fp32", "fp16", "int8")
WEIGHT_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}  # bytes a weight takes in each dtype
# hswish_arith / hsigmoid_arith: the same functions written as arithmetic, ``x * relu6(x + 3) / 6``; a model that
# writes them so runs several ops where the native form runs one, so they are priced as what they are.
ACTS = ("relu", "relu6", "hswish", "hsigmoid", "sigmoid", "swish", "linear", "hswish_arith", "hsigmoid_arith")
GATES = ("sigmoid", "hsigmoid", "hsigmoid_arith")

# Optional spec fields and their defaults. A kind may only set the ones its tokens name (or derive them); every
# other one must stay at its default, so that equal ops compare equal and every key parses back to its spec.
FIELD_DEFAULTS: dict[str, Any] = {
    "kernel": 1, "stride": 1, "expansion": 1, "groups": 1, "act": "", "padding": -1, "hidden": 0,
    "mid_channels": 0, "gate": "", "se_act": "", "expand": True, "skip_add": True,
    # the layers of foreign models: dilation, TensorFlow "same" padding, a pool's ceil_mode, mixed kernels (one
    # per channel part, MixNet), 1x1 convs split into parts
    "dilation": 1, "tf": False, "ceil": False, "mix": (), "expand_groups": 1, "proj_groups": 1,
}

Spec = Any  # an ``latency_lut.ops.OpSpec``; typed loosely because ops imports this module, not the reverse


def conv_out(size: int, kernel: int, stride: int, padding: int = -1, dilation: int = 1, tf: bool = False,
             ceil: bool = False) -> int:
    """Spatial output size of a conv or pool; padding -1 means the 'same'-style default (kernel // 2) * dilation;
    ``tf`` is TensorFlow "same" padding (output = ceil(size / stride)); ``ceil`` a pool's ceil_mode."""
    if tf:
        return -(-size // stride)
    pad = (kernel // 2) * dilation if padding < 0 else padding
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    if not ceil:
        return span // stride + 1
    out = -(-span // stride) + 1
    return out - 1 if (out - 1) * stride >= size + pad else out  # torch: the last window starts inside the input


def spec_hw(s: Spec, kernel: int | None = None) -> tuple[int, int]:
    """Output size of a spec's conv or pool, with its padding, dilation, TF padding and ceil_mode."""
    k = s.kernel if kernel is None else kernel
    pad = getattr(s, "padding", -1)
    return (conv_out(s.h, k, s.stride, pad, s.dilation, s.tf, s.ceil),
            conv_out(s.w, k, s.stride, pad, s.dilation, s.tf, s.ceil))


def tf_same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(low, high) padding of TensorFlow "same" along one axis."""
    total = max((-(-size // stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def mix_splits(channels: int, parts: int) -> list[int]:
    """Channels of each part of a mixed (split) conv: equal, the remainder to the first (MixNet)."""
    split = [channels // parts] * parts
    split[0] += channels - sum(split)
    return split


def normalize_tf(s: Spec, has_padding: bool = True) -> None:
    """TF "same" padding that is symmetric after all is an ordinary padding (``-tf`` only where it differs)."""
    if not s.tf:
        return
    pads = {tf_same_pads(n, s.kernel, s.stride, s.dilation) for n in (s.h, s.w)}
    if len(pads) == 1 and (lo := pads.pop())[0] == lo[1]:
        sym = -1 if lo[0] == (s.kernel // 2) * s.dilation else lo[0]
        if sym >= 0 and not has_padding:
            raise ValueError("a block's depthwise conv uses the default padding or TF 'same'")
        set_field(s, "tf", False)
        if has_padding:
            set_field(s, "padding", sym)


def normalize_mix(s: Spec) -> None:
    """Mixed kernels as a tuple of ints; one kernel is no mix; the kernel field is the largest."""
    mix = tuple(int(v) for v in s.mix)
    if len(mix) == 1:
        mix = ()
    set_field(s, "mix", mix)
    if mix:
        set_field(s, "kernel", max(mix))


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` without dropping more than 10% (MobileNet convention)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def fmt_num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def set_field(spec: Spec, name: str, value: Any) -> None:
    """Normalize a field of a (frozen) spec while it is being constructed."""
    object.__setattr__(spec, name, value)


@dataclass(frozen=True)
class Token:
    """One part of a key: ``{prefix}{value}`` (a number), ``{prefix}{choice}`` (an enum), or ``{prefix}`` alone
    (a flag: the field is ``flag_value`` when the part is present).

    A token is printed when ``show(spec)`` says so; by default when the field differs from its default, or always
    when ``required``.
    """

    field: str
    prefix: str
    kind: str = "int"  # int | num | enum | flag | ints (``3_5_7``: a tuple)
    choices: tuple[str, ...] = ()
    required: bool = False
    flag_value: Any = None
    show: Callable[[Spec], bool] | None = None

    def printed(self, spec: Spec) -> bool:
        if self.show is not None:
            return self.show(spec)
        return self.required or getattr(spec, self.field) != FIELD_DEFAULTS.get(self.field)

    def format(self, spec: Spec) -> str:
        v = getattr(spec, self.field)
        if self.kind == "flag":
            return self.prefix
        if self.kind == "ints":
            return self.prefix + "_".join(str(x) for x in v)
        return f"{self.prefix}{fmt_num(v) if self.kind == 'num' else v}"

    def parse(self, text: str) -> tuple[bool, Any]:
        if self.kind == "flag":
            return (text == self.prefix, self.flag_value)
        if not text.startswith(self.prefix):
            return (False, None)
        rest = text[len(self.prefix):]
        if self.kind == "enum":
            return (rest in self.choices, rest)
        if self.kind == "int" and re.fullmatch(r"\d+", rest):
            return (True, int(rest))
        if self.kind == "num" and re.fullmatch(r"\d+(?:\.\d+)?", rest):
            return (True, float(rest) if "." in rest else int(rest))
        if self.kind == "ints" and re.fullmatch(r"\d+(?:_\d+)+", rest):
            return (True, tuple(int(x) for x in rest.split("_")))
        return (False, None)


def _zero(spec: Spec) -> int:
    return 0


def _same_hw(spec: Spec) -> tuple[int, int]:
    return (spec.h, spec.w)


@dataclass(frozen=True)
class Kind:
    """One block kind. Only ``name``, ``tokens`` and ``build`` are required; the rest has plain defaults."""

    name: str
    tokens: tuple[Token, ...]
    build: Callable[[Spec], Any]  # -> torch.nn.Module; imports torch itself
    doc: str = ""
    spatial: bool = True  # key input part in{H}x{W}x{C}; False: in{C} (a vector)
    default_act: str = ""  # the activation when the key names none; "" with no acts = takes no activation
    acts: tuple[str, ...] = ()  # activations the kind accepts (empty: none)
    flops: Callable[[Spec], int] = _zero
    params: Callable[[Spec], int] = _zero
    out_hw: Callable[[Spec], tuple[int, int]] = _same_hw
    flat_out: bool = False  # output is a (1, C) vector
    normalize: Callable[[Spec], None] | None = None  # canonicalize derived fields (runs before the checks)
    check: Callable[[Spec], None] | None = None  # raise ValueError for field combinations the kind forbids
    is_identity: Callable[[Spec], bool] = lambda spec: False
    # A short human description for breakdown tables (default: the kind's name).
    label: Callable[[Spec], str] | None = None
    # A runtime fuses this op with its neighbours inside a network, so an op of it left over from decomposing a
    # model and timed alone is a fallback, and the breakdown says so.
    fusible: Callable[[Spec], bool] = lambda spec: False
    # The op contains a channel shuffle (a reshape-transpose: cache-hot timed alone, not inside a network; the
    # calibration's ``grouped`` feature counts these).
    shuffles: Callable[[Spec], bool] = lambda spec: False
    # The graph pattern that recognizes this kind inside a foreign model (decomposition fills these in).
    pattern: Any = None
    meta: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def fields(self) -> tuple[str, ...]:  # asked for every op spec made; a kind's tokens never change
        return tuple(t.field for t in self.tokens)

    @property
    def has_cout(self) -> bool:
        return "cout" in self.fields


REGISTRY: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    """Add a kind to the registry; a second kind of the same name is a programming error."""
    if kind.name in REGISTRY:
        raise ValueError(f"block kind {kind.name!r} is registered twice")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", kind.name):
        raise ValueError(f"block kind name {kind.name!r} must be lower-case letters, digits and _")
    REGISTRY[kind.name] = kind
    return kind


def get_kind(name: str) -> Kind:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown op kind {name!r}; expected one of {', '.join(REGISTRY)}") from None


# ---- token helpers shared by the families ----------------------------------------------------------------
OUT = Token("cout", "out", required=True)
KERNEL = Token("kernel", "k", required=True)
STRIDE = Token("stride", "s", required=True)
PADDING = Token("padding", "p", show=lambda s: s.padding >= 0)
# KxK, or mixed kernels ``k3_5_7`` (one per channel part; the kernel field is then the largest)
MIX_KERNEL = Token("kernel", "k", show=lambda s: not s.mix)
MIX = Token("mix", "k", kind="ints")
DILATION = Token("dilation", "d")
TF_SAME = Token("tf", "tf", kind="flag", flag_value=True)
