"""What a block kind is, and the registry that holds every kind (no torch here).

A :class:`Kind` is everything the toolkit knows about one kind of benchmarkable unit: the fields of its key and
their grammar (:class:`Token`), the rules its fields obey, its FLOPs and parameter count, how to build its torch
module, and a slot for the graph pattern that recognizes it inside a foreign model. ``latency_lut.ops.OpSpec``
asks the registry for all of it, so adding a kind is one new module of this package (see ``blocks/__init__.py``).

The functions of a kind receive the op spec (an ``OpSpec``) and read its fields; they never import ``ops``, which
sits above this package.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DTYPES = ("fp32", "fp16", "int8")
ACTS = ("relu", "relu6", "hswish", "hsigmoid", "sigmoid", "swish", "linear")
GATES = ("sigmoid", "hsigmoid")

# Optional spec fields and their defaults. A kind may only set the ones its tokens name (or derive them); every
# other one must stay at its default, so that equal ops compare equal and every key parses back to its spec.
FIELD_DEFAULTS: dict[str, Any] = {
    "kernel": 1, "stride": 1, "expansion": 1, "groups": 1, "act": "", "padding": -1, "hidden": 0,
    "mid_channels": 0, "gate": "", "se_act": "", "expand": True, "skip_add": True,
}

Spec = Any  # an ``latency_lut.ops.OpSpec``; typed loosely because ops imports this module, not the reverse


def conv_out(size: int, kernel: int, stride: int, padding: int = -1) -> int:
    """Spatial output size of a conv or pool; padding -1 means the 'same'-style default kernel // 2."""
    pad = kernel // 2 if padding < 0 else padding
    return (size + 2 * pad - kernel) // stride + 1


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
    kind: str = "int"  # int | num | enum | flag
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
    # The graph pattern that recognizes this kind inside a foreign model (decomposition fills these in).
    pattern: Any = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def fields(self) -> tuple[str, ...]:
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
