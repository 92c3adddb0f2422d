"""Op specs: canonical, hashable descriptions of one benchmarkable unit.

An :class:`OpSpec` is the unit a LUT is keyed by: a candidate block at one layer's input shape, or a fixed op of
the network (stem conv, head conv, global pool, classifier). The spec alone determines the torch module that is
exported and measured, its FLOPs and parameter count, and its key, so what is measured is what is predicted.

Key grammar (stable; documented in the README, parsed back by :meth:`OpSpec.from_key`). Each kind's tokens are
defined once, in the block registry (``latency_lut.blocks``); this module is the generic engine. The first five
forms are the FBNet space's ops; the rest describe the layers of arbitrary CNNs (``latency_lut.decompose``). Fields in
brackets are printed only when they differ from the default, so every key of the original grammar is unchanged::

    conv-in{H}x{W}x{C}-out{C'}-k{K}-s{S}[-p{P}][-g{G}][-d{D}][-tf][-{act}]   # KxK conv (groups G) + BN + act
    ir-in{H}x{W}x{C}-out{C'}-k{K}-e{E}-g{G}-s{S}      # FBNet inverted-residual block; MBConv options:
       [-se{R}][-gate{g}][-seact{a}][-noexp][-nores][-{act}]   # SE, no expansion conv, no residual, act
       (-mid{M} replaces -e{E} where no integer expansion gives the mid channels; foreign models' blocks add
       -xg{P} -pg{P} (split 1x1 convs), -d{D}, -tf and mixed kernels -k3_5_7; see latency_lut.blocks.mbconv)
    skip-in{H}x{W}x{C}-out{C'}-s{S}                   # skip: identity, or 1x1 projection conv + BN + ReLU
    gap-in{H}x{W}x{C}                                 # global average pool (+ flatten)
    fc-in{C}-out{C'}[-{act}]                          # linear layer (+ act, default none)
    se-in{H}x{W}x{C}-m{M}[-seact{a}][-{gate}]         # squeeze-excite: pool, 1x1 C->M, act, 1x1 M->C, gate, mul
    add-in{H}x{W}x{C}[-{act}]                         # elementwise add of two tensors (residual), + act
    shuffle-in{H}x{W}x{C}-g{G}                        # channel shuffle with G groups
    maxpool-in{H}x{W}x{C}-k{K}-s{S}[-p{P}][-tf][-ceil]  # max pooling (ceil: ceil_mode)
    avgpool-in{H}x{W}x{C}-k{K}-s{S}[-p{P}][-tf][-ceil]  # average pooling
    bn-in{H}x{W}x{C}[-{act}]                          # batch norm not preceded by a conv (+ act)
    act-in{H}x{W}x{C}-{act}                           # a stand-alone activation
    concat-in{H}x{W}x{C}-out{C'}                      # channel concat of the input (C) and a second tensor (C'-C)
    logits-in{H}x{W}x{C}-out{N}                       # global average pool + linear classifier, one unit
    slice-in{H}x{W}x{C}-out{C'}                       # C' contiguous channels taken from C (a chunk/split part)
    shufflev2-in{H}x{W}x{C}-out{C'}-k{K}-s{S}         # ShuffleNetV2 unit (split/branches, concat, shuffle)

``{act}`` is one of relu, relu6, hswish, hsigmoid, sigmoid, swish, linear (no activation), hswish_arith and
hsigmoid_arith (the same functions written as arithmetic, priced as what they run). Padding defaults to
(K//2) * D; ``-p{P}`` appears only for other paddings. ``-tf`` is TensorFlow "same" padding, printed only where it
is asymmetric. A conv's kernel may be mixed, ``-k3_5_7`` (MixNet). A depthwise conv is ``conv`` with G = C = C'.
A dtype other than fp32 is appended as ``-{dtype}`` (for example ``-int8``).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from latency_lut.blocks import REGISTRY, build_op, get_kind
from latency_lut.blocks.base import ACTS, DTYPES, FIELD_DEFAULTS, Kind, conv_out, mix_splits, tf_same_pads

__all__ = ["ACTS", "DTYPES", "KINDS", "OpSpec", "conv_out", "mix_splits", "tf_same_pads"]

KINDS = tuple(REGISTRY)
_IN_RE = re.compile(r"^in(?:(?P<h>\d+)x(?P<w>\d+)x)?(?P<cin>\d+)$")
_POSITIVE = ("cin", "h", "w", "cout", "kernel", "stride", "groups")


@dataclass(frozen=True, order=True)
class OpSpec:
    """One benchmarkable unit; see the module docstring for the key grammar and ``latency_lut.blocks`` for kinds."""

    kind: str
    cin: int
    h: int = 1
    w: int = 1
    cout: int = 0
    kernel: int = 1
    stride: int = 1
    expansion: float = 1
    groups: int = 1
    dtype: str = "fp32"
    act: str = ""  # "" = the kind's default activation; normalized so equal ops compare equal
    padding: int = -1  # -1 = kernel // 2
    hidden: int = 0  # squeeze-excite hidden channels (se, and ir blocks with SE)
    mid_channels: int = 0  # ir: absolute mid channels (0 = from the expansion)
    gate: str = ""  # ir with SE: the gate ("" = sigmoid)
    se_act: str = ""  # ir with SE: the inner activation ("" = relu)
    expand: bool = True  # ir: has its 1x1 expansion conv
    skip_add: bool = True  # ir: residual add where stride 1 and cin == cout
    dilation: int = 1  # conv, ir (its depthwise conv)
    tf: bool = False  # conv, ir, pools: TensorFlow "same" padding (asymmetric), an explicit pad in the model
    ceil: bool = False  # pools: ceil_mode
    mix: tuple[int, ...] = ()  # conv, ir: kernels of a mixed-kernel conv, one per channel part (kernel = largest)
    expand_groups: int = 1  # ir: parts of the split 1x1 expansion conv (MixNet)
    proj_groups: int = 1  # ir: parts of the split 1x1 projection conv (MixNet)

    def __post_init__(self) -> None:
        kind = get_kind(self.kind)
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; expected one of {', '.join(DTYPES)}")
        self._normalize(kind)
        for name in _POSITIVE:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"op field {name} must be >= 1, got {getattr(self, name)}")
        if kind.check is not None:
            kind.check(self)

    def _normalize(self, kind: Kind) -> None:
        act = self.act or kind.default_act
        if act and act not in ACTS:
            raise ValueError(f"unknown activation {act!r}; expected one of {', '.join(ACTS)}")
        if act and act not in kind.acts:
            allowed = f"one of {', '.join(kind.acts)}" if kind.acts else "no activation"
            raise ValueError(f"op kind {self.kind} takes {allowed} (got {act!r})")
        object.__setattr__(self, "act", "" if act == kind.default_act else act)
        if not kind.has_cout:
            if self.cout not in (0, self.cin):
                raise ValueError(f"op kind {self.kind} keeps its channels; cout {self.cout} != cin {self.cin}")
            object.__setattr__(self, "cout", self.cin)
        if int(self.dilation) < 1:
            raise ValueError(f"op field dilation must be >= 1, got {self.dilation}")
        if kind.normalize is not None:
            kind.normalize(self)  # first: it may derive the kernel (mixed kernels) and the padding (TF "same")
        if "padding" in kind.fields and self.padding == (self.kernel // 2) * self.dilation:
            object.__setattr__(self, "padding", -1)
        for name, default in FIELD_DEFAULTS.items():
            if name != "act" and name not in kind.fields and getattr(self, name) != default:
                raise ValueError(f"op kind {self.kind} takes no field {name} (got {getattr(self, name)!r})")

    @property
    def spec_kind(self) -> Kind:
        """The registry's definition of this op's kind."""
        return REGISTRY[self.kind]

    @property
    def activation(self) -> str:
        """The op's activation with the kind's default filled in ("linear" = none)."""
        return self.act or self.spec_kind.default_act or "linear"

    # ---- identity and shapes -------------------------------------------------------------------------------
    @property
    def key(self) -> str:
        kind = self.spec_kind
        parts = [self.kind, f"in{self.h}x{self.w}x{self.cin}" if kind.spatial else f"in{self.cin}"]
        parts += [t.format(self) for t in kind.tokens if t.printed(self)]
        if self.act:
            parts.append(self.act)
        if self.dtype != "fp32":
            parts.append(self.dtype)
        return "-".join(parts)

    @classmethod
    def from_key(cls, key: str) -> OpSpec:
        """Parse a key back into its spec; raises ``ValueError`` for anything that is not a valid key."""
        tokens = key.split("-")
        kind = REGISTRY.get(tokens[0])
        if kind is None or len(tokens) < 2:
            raise ValueError(f"not an op key: {key!r}")
        m = _IN_RE.match(tokens[1])
        if not m:
            raise ValueError(f"not an op key: {key!r} (second part must be in{{H}}x{{W}}x{{C}} or in{{C}})")
        fields: dict[str, Any] = {"kind": kind.name, "cin": int(m["cin"])}
        if kind.spatial:
            if m["h"] is None:
                raise ValueError(f"op key {key!r} lacks its HxWxC input shape")
            fields.update(h=int(m["h"]), w=int(m["w"]))
        elif m["h"] is not None:
            raise ValueError(f"op key {key!r}: a {kind.name} op takes in{{C}}, not a HxWxC shape")
        for tok in tokens[2:]:
            for t in kind.tokens:
                ok, val = t.parse(tok)
                if ok:
                    if t.field in fields:
                        raise ValueError(f"op key {key!r} repeats field {t.prefix!r}")
                    fields[t.field] = val
                    break
            else:
                if tok in DTYPES and "dtype" not in fields:
                    fields["dtype"] = tok
                elif tok in ACTS and "act" not in fields:
                    fields["act"] = tok
                else:
                    raise ValueError(f"not an op key: {key!r} (unexpected part {tok!r})")
        try:
            spec = cls(**fields)
        except (TypeError, ValueError) as e:
            raise ValueError(f"not an op key: {key!r} ({e})") from None
        if spec.key != key:
            raise ValueError(f"op key {key!r} is not canonical (expected {spec.key!r})")
        return spec

    @property
    def is_identity(self) -> bool:
        """An op that changes nothing (a skip at an unchanged shape) costs nothing and is never measured."""
        return self.spec_kind.is_identity(self)

    @property
    def has_residual(self) -> bool:
        return self.kind == "ir" and self.spec_kind.meta["has_residual"](self)

    @property
    def mid(self) -> int:
        """Mid channels of an inverted-residual block (from the expansion, rounded to its groups, or absolute)."""
        return self.spec_kind.meta["mid"](self)

    @property
    def out_hw(self) -> tuple[int, int]:
        return self.spec_kind.out_hw(self)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """NCHW input shape (batch 1); ``(1, C)`` for a vector input (the classifier)."""
        return (1, self.cin, self.h, self.w) if self.spec_kind.spatial else (1, self.cin)

    @property
    def output_shape(self) -> tuple[int, ...]:
        if self.spec_kind.flat_out:
            return (1, self.cout)
        return (1, self.cout, *self.out_hw)

    # ---- cost model ----------------------------------------------------------------------------------------
    @property
    def flops(self) -> int:
        """Multiply-adds of the convolutions and linear layers (BN, ReLU and adds are not counted)."""
        return int(self.spec_kind.flops(self))

    @property
    def params(self) -> int:
        """Trainable parameters: conv/linear weights, BN affine pairs, biases."""
        return int(self.spec_kind.params(self))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def build_module(self) -> Any:
        """The torch module of this op (torch is imported here, not at package import)."""
        return build_op(self)

    def __str__(self) -> str:
        return self.key
