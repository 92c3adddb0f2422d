"""Op specs: canonical, hashable descriptions of one benchmarkable unit.

An :class:`OpSpec` is the unit a LUT is keyed by: a candidate block at one layer's input shape, or a fixed op of
the network (stem conv, head conv, global pool, classifier). The spec alone determines the torch module that is
exported and measured, its FLOPs and parameter count, and its key, so what is measured is what is predicted.

Key grammar (stable; documented in the README, parsed back by :meth:`OpSpec.from_key`). The first five forms are
the FBNet space's ops; the rest describe the layers of arbitrary CNNs (``latency_lut.decompose``). Fields in
brackets are printed only when they differ from the default, so every key of the original grammar is unchanged::

    conv-in{H}x{W}x{C}-out{C'}-k{K}-s{S}[-p{P}][-g{G}][-{act}]   # KxK conv (groups G) + BN + act (default relu)
    ir-in{H}x{W}x{C}-out{C'}-k{K}-e{E}-g{G}-s{S}      # FBNet inverted-residual block
    skip-in{H}x{W}x{C}-out{C'}-s{S}                   # skip: identity, or 1x1 projection conv + BN + ReLU
    gap-in{H}x{W}x{C}                                 # global average pool (+ flatten)
    fc-in{C}-out{C'}[-{act}]                          # linear layer (+ act, default none)
    se-in{H}x{W}x{C}-m{M}[-{gate}]                    # squeeze-excite: pool, 1x1 C->M, ReLU, 1x1 M->C, gate, mul
    add-in{H}x{W}x{C}[-{act}]                         # elementwise add of two tensors (residual), + act
    shuffle-in{H}x{W}x{C}-g{G}                        # channel shuffle with G groups
    maxpool-in{H}x{W}x{C}-k{K}-s{S}[-p{P}]            # max pooling
    avgpool-in{H}x{W}x{C}-k{K}-s{S}[-p{P}]            # average pooling
    bn-in{H}x{W}x{C}[-{act}]                          # batch norm not preceded by a conv (+ act)
    act-in{H}x{W}x{C}-{act}                           # a stand-alone activation
    concat-in{H}x{W}x{C}-out{C'}                      # channel concat of the input (C) and a second tensor (C'-C)

``{act}`` is one of relu, relu6, hswish, hsigmoid, sigmoid, swish, linear (no activation). Padding defaults to
K//2; ``-p{P}`` appears only for other paddings. A depthwise conv is ``conv`` with G = C = C'.
A dtype other than fp32 is appended as ``-{dtype}`` (for example ``-int8``).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

KINDS = ("conv", "ir", "skip", "gap", "fc", "se", "add", "shuffle", "maxpool", "avgpool", "bn", "act", "concat")
DTYPES = ("fp32", "fp16", "int8")
ACTS = ("relu", "relu6", "hswish", "hsigmoid", "sigmoid", "swish", "linear")

# The activation a kind has when its key names none; printing only deviations keeps the original keys unchanged.
DEFAULT_ACT = {"conv": "relu", "ir": "relu", "skip": "relu", "fc": "linear", "bn": "linear", "add": "linear",
               "se": "sigmoid"}
_ACT_KINDS = (*DEFAULT_ACT, "act")
_PAD_KINDS = ("conv", "maxpool", "avgpool")
_SPATIAL_OUT = ("conv", "ir", "skip", "maxpool", "avgpool")
_TOKEN_RE = re.compile(r"^(?P<name>out|k|e|g|s|p|m)(?P<val>\d+(?:\.\d+)?)$")
_IN_RE = re.compile(r"^in(?:(?P<h>\d+)x(?P<w>\d+)x)?(?P<cin>\d+)$")
_TOKEN_FIELD = {"out": "cout", "k": "kernel", "e": "expansion", "g": "groups", "s": "stride", "p": "padding",
                "m": "hidden"}


def conv_out(size: int, kernel: int, stride: int, padding: int = -1) -> int:
    """Spatial output size of a conv or pool; padding -1 means the 'same'-style default kernel // 2."""
    pad = kernel // 2 if padding < 0 else padding
    return (size + 2 * pad - kernel) // stride + 1


def _fmt_e(e: float) -> str:
    return str(int(e)) if float(e).is_integer() else f"{e:g}"


@dataclass(frozen=True, order=True)
class OpSpec:
    """One benchmarkable unit; see the module docstring for the key grammar."""

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
    act: str = ""  # "" = the kind's default activation (DEFAULT_ACT); normalized so equal ops compare equal
    padding: int = -1  # -1 = kernel // 2
    hidden: int = 0  # squeeze-excite hidden channels

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown op kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; expected one of {', '.join(DTYPES)}")
        self._normalize()
        if self.kind in ("gap", "se", "add", "shuffle", "maxpool", "avgpool", "bn", "act") and self.cout == 0:
            object.__setattr__(self, "cout", self.cin)
        for name in ("cin", "h", "w", "cout", "kernel", "stride", "groups"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"op field {name} must be >= 1, got {getattr(self, name)}")
        if self.kind == "se" and self.hidden < 1:
            raise ValueError("a squeeze-excite op needs its hidden channels (field hidden >= 1)")
        if self.kind in ("conv", "ir") and (self.cin % self.groups or self.cout % self.groups):
            raise ValueError(f"channels {self.cin}->{self.cout} are not divisible by groups {self.groups}")

    def _normalize(self) -> None:
        act = self.act or DEFAULT_ACT.get(self.kind, "")
        if act and act not in ACTS:
            raise ValueError(f"unknown activation {act!r}; expected one of {', '.join(ACTS)}")
        if self.kind == "act" and not act:
            raise ValueError("an act op needs its activation (field act)")
        if act and self.kind not in _ACT_KINDS:
            raise ValueError(f"op kind {self.kind} takes no activation (got {act!r})")
        if self.kind in ("ir", "skip") and act != "relu":
            raise ValueError(f"op kind {self.kind} always uses relu (got {act!r})")
        if self.kind == "se" and act not in ("sigmoid", "hsigmoid"):
            raise ValueError(f"a squeeze-excite gate is sigmoid or hsigmoid (got {act!r})")
        object.__setattr__(self, "act", "" if act == DEFAULT_ACT.get(self.kind) else act)
        if self.kind in _PAD_KINDS and self.padding == self.kernel // 2:
            object.__setattr__(self, "padding", -1)
        elif self.padding >= 0 and self.kind not in _PAD_KINDS:
            raise ValueError(f"op kind {self.kind} takes no padding")
        if self.hidden and self.kind != "se":
            raise ValueError(f"op kind {self.kind} takes no hidden channels")

    @property
    def activation(self) -> str:
        """The op's activation with the kind's default filled in ("linear" = none)."""
        return self.act or DEFAULT_ACT.get(self.kind, "linear")

    # ---- identity and shapes -------------------------------------------------------------------------------
    @property
    def key(self) -> str:
        k = self.kind
        if k == "fc":
            base = f"fc-in{self.cin}-out{self.cout}"
        else:
            base = f"{k}-in{self.h}x{self.w}x{self.cin}"
        if k in ("conv", "ir", "skip", "concat"):
            base += f"-out{self.cout}"
        if k == "conv":
            base += f"-k{self.kernel}-s{self.stride}" + self._pad_token() + (f"-g{self.groups}" if self.groups > 1
                                                                                 else "")
        elif k == "ir":
            base += f"-k{self.kernel}-e{_fmt_e(self.expansion)}-g{self.groups}-s{self.stride}"
        elif k == "skip":
            base += f"-s{self.stride}"
        elif k in ("maxpool", "avgpool"):
            base += f"-k{self.kernel}-s{self.stride}" + self._pad_token()
        elif k == "se":
            base += f"-m{self.hidden}"
        elif k == "shuffle":
            base += f"-g{self.groups}"
        if self.act:
            base += f"-{self.act}"
        return base if self.dtype == "fp32" else f"{base}-{self.dtype}"

    def _pad_token(self) -> str:
        return f"-p{self.padding}" if self.padding >= 0 else ""

    @classmethod
    def from_key(cls, key: str) -> OpSpec:
        """Parse a key back into its spec; raises ``ValueError`` for anything that is not a valid key."""
        tokens = key.split("-")
        kind = tokens[0]
        if kind not in KINDS or len(tokens) < 2:
            raise ValueError(f"not an op key: {key!r}")
        m = _IN_RE.match(tokens[1])
        if not m:
            raise ValueError(f"not an op key: {key!r} (second part must be in{{H}}x{{W}}x{{C}} or in{{C}})")
        fields: dict[str, Any] = {"kind": kind, "cin": int(m["cin"])}
        if kind != "fc":
            if m["h"] is None:
                raise ValueError(f"op key {key!r} lacks its HxWxC input shape")
            fields.update(h=int(m["h"]), w=int(m["w"]))
        for tok in tokens[2:]:
            t = _TOKEN_RE.match(tok)
            if t:
                name, val = _TOKEN_FIELD[t["name"]], t["val"]
                if name in fields:
                    raise ValueError(f"op key {key!r} repeats field {t['name']!r}")
                fields[name] = (float(val) if "." in val else int(val)) if name == "expansion" else int(val)
            elif tok in DTYPES and "dtype" not in fields:
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
        """A skip that changes nothing costs nothing and is never measured."""
        return self.kind == "skip" and self.stride == 1 and self.cin == self.cout

    @property
    def has_residual(self) -> bool:
        return self.kind == "ir" and self.stride == 1 and self.cin == self.cout

    @property
    def mid(self) -> int:
        """Hidden channels of an inverted-residual block, rounded to a multiple of its groups."""
        m = int(round(self.cin * self.expansion))
        return max(self.groups, m - m % self.groups)

    @property
    def out_hw(self) -> tuple[int, int]:
        if self.kind in ("fc", "gap"):
            return (1, 1)
        if self.kind not in _SPATIAL_OUT:
            return (self.h, self.w)
        k = 1 if self.kind == "skip" else self.kernel
        return (conv_out(self.h, k, self.stride, self.padding), conv_out(self.w, k, self.stride, self.padding))

    @property
    def input_shape(self) -> tuple[int, ...]:
        """NCHW input shape (batch 1); ``(1, C)`` for the classifier."""
        return (1, self.cin) if self.kind == "fc" else (1, self.cin, self.h, self.w)

    @property
    def output_shape(self) -> tuple[int, ...]:
        if self.kind in ("fc", "gap"):
            return (1, self.cout)
        return (1, self.cout, *self.out_hw)

    # ---- cost model ----------------------------------------------------------------------------------------
    @property
    def flops(self) -> int:
        """Multiply-adds of the convolutions and linear layers (BN, ReLU and adds are not counted)."""
        ho, wo = self.out_hw
        if self.kind == "conv":
            return ho * wo * self.cout * self.cin // self.groups * self.kernel**2
        if self.kind == "ir":
            mid, g = self.mid, self.groups
            pw1 = self.h * self.w * self.cin * mid // g
            dw = ho * wo * mid * self.kernel**2
            pw2 = ho * wo * mid * self.cout // g
            return pw1 + dw + pw2
        if self.kind == "skip":
            return 0 if self.is_identity else ho * wo * self.cin * self.cout
        if self.kind == "gap":
            return self.h * self.w * self.cin
        if self.kind == "fc":
            return self.cin * self.cout
        if self.kind == "se":
            return self.h * self.w * self.cin + 2 * self.cin * self.hidden
        if self.kind == "avgpool":
            return ho * wo * self.cin * self.kernel**2
        return 0  # max pool, adds, activations, shuffles and copies have no multiply-adds

    @property
    def params(self) -> int:
        """Trainable parameters: conv/linear weights, BN affine pairs, the classifier bias."""
        if self.kind == "conv":
            return self.cin // self.groups * self.cout * self.kernel**2 + 2 * self.cout
        if self.kind == "ir":
            mid, g = self.mid, self.groups
            pw1 = self.cin * mid // g + 2 * mid
            dw = mid * self.kernel**2 + 2 * mid
            return pw1 + dw + mid * self.cout // g + 2 * self.cout
        if self.kind == "skip":
            return 0 if self.is_identity else self.cin * self.cout + 2 * self.cout
        if self.kind == "fc":
            return self.cin * self.cout + self.cout
        if self.kind == "se":
            return 2 * self.cin * self.hidden + self.cin + self.hidden
        if self.kind == "bn":
            return 2 * self.cin
        return 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def build_module(self) -> Any:
        """The torch module of this op (torch is imported here, not at package import)."""
        from latency_lut.blocks import build_op

        return build_op(self)

    def __str__(self) -> str:
        return self.key
