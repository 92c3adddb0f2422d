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
    se-in{H}x{W}x{C}-m{M}[-{gate}][-sei_{act}]        # squeeze-excite: pool, 1x1 C->M, act (relu), 1x1 M->C, gate, mul
    add-in{H}x{W}x{C}[-{act}]                         # elementwise add of two tensors (residual), + act
    shuffle-in{H}x{W}x{C}-g{G}                        # channel shuffle with G groups
    maxpool-in{H}x{W}x{C}-k{K}-s{S}[-p{P}][-ceil]     # max pooling (ceil: ceil_mode)
    avgpool-in{H}x{W}x{C}-k{K}-s{S}[-p{P}][-ceil]     # average pooling
    bn-in{H}x{W}x{C}[-{act}]                          # batch norm not preceded by a conv (+ act)
    act-in{H}x{W}x{C}-{act}                           # a stand-alone activation
    concat-in{H}x{W}x{C}-out{C'}                      # channel concat of the input (C) and a second tensor (C'-C)
    slice-in{H}x{W}x{C}-out{C'}                       # C' contiguous channels taken from C (a chunk/split part)
    mb-in{H}x{W}x{C}-out{C'}-k{K}-s{S}-x{X}[-g{G}][-pg{P}][-d{D}][-tf][-se{M}][-{act}][-sei_{act}][-seg_{gate}][-nores]
        # MBConv / inverted residual of any model, one unit: [1x1 C->X + BN + act] (x0: none, X = C), KxK depthwise
        # (stride S, dilation D) + BN + act, [squeeze-excite X->M->X, inner act (default relu), gate (default
        # sigmoid)], 1x1 X->C' + BN, residual add when S = 1 and C = C' (unless -nores); act default relu.
        # MixNet's forms: K may be mixed (k3_5_7), the 1x1 convs split into G / P parts (g2, pg2)

    shufflev2-in{H}x{W}x{C}-out{C'}-k{K}-s{S}
        # ShuffleNetV2 unit, one unit: S = 1 splits the channels in halves, one half through 1x1 + BN + ReLU, KxK
        # depthwise + BN, 1x1 + BN + ReLU, concatenated with the other half; S = 2 runs two such branches on the
        # whole input (KxK depthwise s2 + BN, 1x1 + BN + ReLU / the three-conv branch); then a channel shuffle (2)

A conv's kernel may be *mixed*, ``-k3_5_7``: the input channels are split into one part per kernel (equal parts,
the remainder to the first, as MixNet does), each part convolved with its kernel (depthwise when G = C = C'),
the outputs concatenated.

Convs and pools may also carry ``-d{D}`` (dilation) and ``-tf`` (TensorFlow "same" padding: the total padding
split low = total // 2, high = the rest, as an explicit pad before the op in TF ports); ``-tf`` appears only where
it differs from a symmetric padding.

``{act}`` is one of relu, relu6, hswish, hsigmoid, sigmoid, swish, linear (no activation), hswish_arith and
hsigmoid_arith (the same functions written as arithmetic, ``x * relu6(x + 3) / 6``: a model that writes them so
runs several ops where the native form runs one, so they are priced as what they are). Padding defaults to
K//2; ``-p{P}`` appears only for other paddings. A depthwise conv is ``conv`` with G = C = C'.
A dtype other than fp32 is appended as ``-{dtype}`` (for example ``-int8``).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

KINDS = ("conv", "ir", "skip", "gap", "fc", "se", "add", "shuffle", "maxpool", "avgpool", "bn", "act", "concat",
         "slice", "mb", "shufflev2")
DTYPES = ("fp32", "fp16", "int8")
ACTS = ("relu", "relu6", "hswish", "hsigmoid", "sigmoid", "swish", "linear", "hswish_arith", "hsigmoid_arith")
GATES = ("sigmoid", "hsigmoid", "hsigmoid_arith")

# The activation a kind has when its key names none; printing only deviations keeps the original keys unchanged.
DEFAULT_ACT = {"conv": "relu", "ir": "relu", "skip": "relu", "fc": "linear", "bn": "linear", "add": "linear",
               "se": "sigmoid", "mb": "relu"}
_ACT_KINDS = (*DEFAULT_ACT, "act")
_PAD_KINDS = ("conv", "maxpool", "avgpool")
_DIL_KINDS = ("conv", "mb")
_TF_KINDS = ("conv", "maxpool", "avgpool", "mb")
_SPATIAL_OUT = ("conv", "ir", "skip", "maxpool", "avgpool", "mb", "shufflev2")
_TOKEN_RE = re.compile(r"^(?P<name>out|k|e|g|se|s|pg|p|m|x|d)(?P<val>\d+(?:\.\d+)?)$")
_MIX_RE = re.compile(r"^k(?P<ks>\d+(?:_\d+)+)$")
_IN_RE = re.compile(r"^in(?:(?P<h>\d+)x(?P<w>\d+)x)?(?P<cin>\d+)$")
_TOKEN_FIELD = {"out": "cout", "k": "kernel", "e": "expansion", "g": "groups", "s": "stride", "p": "padding",
                "m": "hidden", "se": "hidden", "x": "expand", "d": "dilation", "pg": "proj_groups"}
_SE_ACT_RE = re.compile(r"^(?P<name>sei|seg)_(?P<act>[a-z0-9_]+)$")


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


def mix_splits(channels: int, parts: int) -> list[int]:
    """Channels of each part of a mixed (split) conv: equal, the remainder to the first (MixNet)."""
    split = [channels // parts] * parts
    split[0] += channels - sum(split)
    return split


def tf_same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(low, high) padding of TensorFlow "same" along one axis."""
    total = max((-(-size // stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


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
    hidden: int = 0  # squeeze-excite hidden channels (se; mb with squeeze-excite)
    expand: int = 0  # mb: channels after the 1x1 expansion (0 = no expansion conv)
    dilation: int = 1  # conv, mb (depthwise)
    tf: bool = False  # TensorFlow "same" padding (asymmetric), as an explicit pad in the model
    se_act: str = ""  # mb: squeeze-excite inner activation ("" = relu)
    gate: str = ""  # mb: squeeze-excite gate ("" = sigmoid)
    nores: bool = False  # mb: no residual add although stride 1 and C = C'
    ceil: bool = False  # pools: ceil_mode
    mix: tuple[int, ...] = ()  # conv, mb: kernels of a mixed-kernel conv, one per channel part (kernel = largest)
    proj_groups: int = 1  # mb: parts of the split 1x1 projection (MixNet)

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
        if self.dilation < 1:
            raise ValueError(f"op field dilation must be >= 1, got {self.dilation}")
        if self.kind in ("conv", "ir") and (self.cin % self.groups or self.cout % self.groups):
            raise ValueError(f"channels {self.cin}->{self.cout} are not divisible by groups {self.groups}")
        if self.mix and self.kind == "conv" and self.groups not in (1, self.cin):
            raise ValueError("a mixed-kernel conv is depthwise (groups = channels) or dense per part (groups 1)")
        if self.mix and self.kind == "conv" and self.groups > 1 and self.cin != self.cout:
            raise ValueError("a mixed-kernel depthwise conv keeps its channels")
        if self.kind == "shufflev2" and (self.cout % 2 or (self.stride == 1 and self.cin != self.cout)):
            raise ValueError("a ShuffleNetV2 unit has even output channels, and keeps its channels at stride 1")
        if self.kind == "slice" and self.cout > self.cin:
            raise ValueError(f"a slice takes at most its input's {self.cin} channels, not {self.cout}")

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
        if self.kind == "se" and act not in GATES:
            raise ValueError(f"a squeeze-excite gate is sigmoid or hsigmoid (got {act!r})")
        object.__setattr__(self, "act", "" if act == DEFAULT_ACT.get(self.kind) else act)
        if self.kind in _PAD_KINDS and self.padding == (self.kernel // 2) * self.dilation:
            object.__setattr__(self, "padding", -1)
        elif self.padding >= 0 and self.kind not in _PAD_KINDS:
            raise ValueError(f"op kind {self.kind} takes no padding")
        if self.hidden and self.kind not in ("se", "mb"):
            raise ValueError(f"op kind {self.kind} takes no hidden channels")
        self._normalize_ext()

    def _normalize_ext(self) -> None:
        """Fields of the generic CNN ops (mb, dilation, TF padding); at their defaults for every older key."""
        k = self.kind
        mix = tuple(int(v) for v in self.mix)
        if len(mix) == 1:
            mix = ()
        if mix:
            if k not in ("conv", "mb"):
                raise ValueError(f"op kind {k} takes no mixed kernels")
            object.__setattr__(self, "kernel", max(mix))
        object.__setattr__(self, "mix", mix)
        if self.proj_groups != 1 and k != "mb":
            raise ValueError(f"op kind {k} takes no projection groups")
        if self.dilation != 1 and k not in _DIL_KINDS:
            raise ValueError(f"op kind {k} takes no dilation")
        if self.tf:
            if k not in _TF_KINDS:
                raise ValueError(f"op kind {k} takes no TF 'same' padding")
            pads = {tf_same_pads(n, self.kernel, self.stride, self.dilation) for n in (self.h, self.w)}
            if len(pads) == 1 and (lo := pads.pop())[0] == lo[1]:  # symmetric after all: an ordinary padding
                sym = -1 if lo[0] == (self.kernel // 2) * self.dilation else lo[0]
                object.__setattr__(self, "tf", False)
                if sym >= 0 and k == "mb":
                    raise ValueError("an mb block's depthwise conv uses the default padding or TF 'same'")
                object.__setattr__(self, "padding", sym)
        if self.ceil and k not in ("maxpool", "avgpool"):
            raise ValueError(f"op kind {k} takes no ceil_mode")
        if self.ceil and conv_out(self.h, self.kernel, self.stride, self.padding, ceil=True) == conv_out(
                self.h, self.kernel, self.stride, self.padding) and conv_out(
                self.w, self.kernel, self.stride, self.padding, ceil=True) == conv_out(
                self.w, self.kernel, self.stride, self.padding):
            object.__setattr__(self, "ceil", False)  # ceil_mode that changes nothing is the ordinary pool
        if k == "se":
            if self.se_act and self.se_act not in ACTS:
                raise ValueError(f"unknown activation {self.se_act!r}; expected one of {', '.join(ACTS)}")
            object.__setattr__(self, "se_act", "" if self.se_act == "relu" else self.se_act)
        if k != "mb":
            if self.expand or (self.se_act and k != "se") or self.gate or self.nores:
                raise ValueError(f"op kind {k} takes no expansion channels, squeeze-excite acts or residual flag")
            return
        if self.expand < 0:
            raise ValueError("mb expansion channels must be >= 0 (0: no expansion conv)")
        if self.groups > 1 and not self.expand:
            raise ValueError("mb expansion groups need an expansion conv")
        for name in ("se_act", "gate"):
            v = getattr(self, name)
            if v and v not in ACTS:
                raise ValueError(f"unknown activation {v!r}; expected one of {', '.join(ACTS)}")
        if (self.se_act or self.gate) and not self.hidden:
            raise ValueError("mb squeeze-excite activations need its hidden channels (se{M})")
        if self.gate and self.gate not in GATES:
            raise ValueError(f"a squeeze-excite gate is sigmoid or hsigmoid (got {self.gate!r})")
        object.__setattr__(self, "se_act", "" if self.se_act == "relu" else self.se_act)
        object.__setattr__(self, "gate", "" if self.gate == "sigmoid" else self.gate)
        if self.nores and not (self.stride == 1 and self.cin == self.cout):
            object.__setattr__(self, "nores", False)
        if self.padding >= 0:
            raise ValueError("an mb block's depthwise conv uses the default padding or TF 'same'")

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
        if k in ("conv", "ir", "skip", "concat", "slice", "mb", "shufflev2"):
            base += f"-out{self.cout}"
        if k == "conv":
            base += f"-{self._k_token()}-s{self.stride}" + self._pad_token() + (f"-g{self.groups}" if self.groups > 1
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
        elif k == "shufflev2":
            base += f"-k{self.kernel}-s{self.stride}"
        elif k == "mb":
            base += f"-{self._k_token()}-s{self.stride}-x{self.expand}"
            base += (f"-g{self.groups}" if self.groups > 1 else "") + (f"-pg{self.proj_groups}"
                                                                        if self.proj_groups > 1 else "")
        base += (f"-d{self.dilation}" if self.dilation > 1 else "") + ("-tf" if self.tf else "")
        if k == "mb" and self.hidden:
            base += f"-se{self.hidden}"
        if self.act:
            base += f"-{self.act}"
        base += f"-sei_{self.se_act}" if self.se_act else ""
        if k == "mb":
            base += f"-seg_{self.gate}" if self.gate else ""
            base += "-nores" if self.nores else ""
        base += "-ceil" if self.ceil else ""
        return base if self.dtype == "fp32" else f"{base}-{self.dtype}"

    def _k_token(self) -> str:
        return "k" + "_".join(str(v) for v in self.mix) if self.mix else f"k{self.kernel}"

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
            elif (mx := _MIX_RE.match(tok)) and "mix" not in fields:
                fields["mix"] = tuple(int(v) for v in mx["ks"].split("_"))
            elif tok in DTYPES and "dtype" not in fields:
                fields["dtype"] = tok
            elif tok in ("tf", "nores", "ceil") and tok not in fields:
                fields[tok] = True
            elif (sa := _SE_ACT_RE.match(tok)) and sa["act"] in ACTS:
                fields["se_act" if sa["name"] == "sei" else "gate"] = sa["act"]
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
        return self.kind in ("ir", "mb") and self.stride == 1 and self.cin == self.cout and not self.nores

    @property
    def mid(self) -> int:
        """Channels between the 1x1 convs: of an ``ir`` block rounded to a multiple of its groups; of an ``mb``
        block its ``expand`` (the input channels when it has no expansion conv)."""
        if self.kind == "mb":
            return self.expand or self.cin
        m = int(round(self.cin * self.expansion))
        return max(self.groups, m - m % self.groups)

    @property
    def out_hw(self) -> tuple[int, int]:
        if self.kind in ("fc", "gap"):
            return (1, 1)
        if self.kind not in _SPATIAL_OUT:
            return (self.h, self.w)
        k = 1 if self.kind == "skip" else self.kernel
        d, tf, c = self.dilation, self.tf, self.ceil
        return (conv_out(self.h, k, self.stride, self.padding, d, tf, c),
                conv_out(self.w, k, self.stride, self.padding, d, tf, c))

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
            if self.mix:
                ins = mix_splits(self.cin, len(self.mix))
                outs = ins if self.groups > 1 else mix_splits(self.cout, len(self.mix))
                per = [(1 if self.groups > 1 else ci) * co * kk**2 for ci, co, kk in zip(ins, outs, self.mix)]
                return ho * wo * sum(per)
            return ho * wo * self.cout * self.cin // self.groups * self.kernel**2
        if self.kind == "ir":
            mid, g = self.mid, self.groups
            pw1 = self.h * self.w * self.cin * mid // g
            dw = ho * wo * mid * self.kernel**2
            pw2 = ho * wo * mid * self.cout // g
            return pw1 + dw + pw2
        if self.kind == "mb":
            mid = self.mid
            pw1 = self.h * self.w * self.cin * self.expand // self.groups
            se = ho * wo * mid + 2 * mid * self.hidden if self.hidden else 0
            return pw1 + ho * wo * self._dw_taps() + se + ho * wo * mid * self.cout // self.proj_groups
        if self.kind == "shufflev2":
            b, k2 = self.cout // 2, self.kernel**2
            if self.stride == 1:
                return self.h * self.w * b * b + ho * wo * b * (k2 + b)
            return ho * wo * self.cin * (k2 + b) + self.h * self.w * self.cin * b + ho * wo * b * (k2 + b)
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
            if self.mix:
                ho, wo = self.out_hw
                return self.flops // (ho * wo) + 2 * self.cout
            return self.cin // self.groups * self.cout * self.kernel**2 + 2 * self.cout
        if self.kind == "ir":
            mid, g = self.mid, self.groups
            pw1 = self.cin * mid // g + 2 * mid
            dw = mid * self.kernel**2 + 2 * mid
            return pw1 + dw + mid * self.cout // g + 2 * self.cout
        if self.kind == "mb":
            mid, x = self.mid, self.expand
            se = 2 * mid * self.hidden + mid + self.hidden if self.hidden else 0
            return (self.cin * x // self.groups + 2 * x) + (self._dw_taps() + 2 * mid) + se + \
                mid * self.cout // self.proj_groups + 2 * self.cout
        if self.kind == "shufflev2":
            b, k2, c = self.cout // 2, self.kernel**2, self.cin
            branch = (c if self.stride > 1 else b) * b + 2 * b + b * k2 + 2 * b + b * b + 2 * b
            return branch + (c * k2 + 2 * c + c * b + 2 * b if self.stride > 1 else 0)
        if self.kind == "skip":
            return 0 if self.is_identity else self.cin * self.cout + 2 * self.cout
        if self.kind == "fc":
            return self.cin * self.cout + self.cout
        if self.kind == "se":
            return 2 * self.cin * self.hidden + self.cin + self.hidden
        if self.kind == "bn":
            return 2 * self.cin
        return 0

    def _dw_taps(self) -> int:
        """Weights of an mb block's depthwise conv (mixed kernels: one per channel part)."""
        if not self.mix:
            return self.mid * self.kernel**2
        return sum(c * k**2 for c, k in zip(mix_splits(self.mid, len(self.mix)), self.mix))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def build_module(self) -> Any:
        """The torch module of this op (torch is imported here, not at package import)."""
        from latency_lut.blocks import build_op

        return build_op(self)

    def __str__(self) -> str:
        return self.key
