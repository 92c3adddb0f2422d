"""Inverted-residual / MBConv blocks (``ir``): FBNet, ProxylessNAS, MobileNetV2/V3, Once-for-All, MnasNet.

One kind covers them all::

    ir-in{H}x{W}x{C}-out{C'}-k{K}-(e{E}|mid{M})-g{G}[-xg{P}][-pg{P}]-s{S}[-d{D}][-tf][-se{R}][-gate{gate}]
        [-seact{act}][-noexp][-nores][-{act}]

- ``e{E}``: mid channels from the expansion, ``round(C * E)`` rounded down to a multiple of G (FBNet); ``mid{M}``:
  absolute mid channels (OFA's ``expand``), printed only when no integer expansion gives them.
- ``g{G}``: the two 1x1 convs are group convs, with a channel shuffle after the first (FBNet's ``_g2``).
- ``se{R}``: squeeze-excite after the depthwise conv with R hidden channels; gate sigmoid (default) or hsigmoid,
  inner activation relu (default) or another.
- ``noexp``: no 1x1 expansion conv (MBConv with expansion 1, as in MobileNetV2/V3 and ProxylessNAS; FBNet keeps
  it, so its ``e1`` blocks have it).
- ``nores``: no residual add even though stride 1 and C = C' would allow one.
- ``{act}``: activation of the expansion and depthwise convs: relu (default), relu6, hswish, swish or
  hswish_arith (hard-swish written as arithmetic); the projection conv is linear.
- The depthwise conv of a foreign model's block: mixed kernels ``k3_5_7`` (MixNet: one per channel part),
  dilation ``d{D}``, TensorFlow "same" padding ``tf`` (only where asymmetric).
- ``xg{P}`` / ``pg{P}``: the expansion / projection 1x1 conv split into P channel parts (MixNet's grouped 1x1:
  split, convs, concat; no channel shuffle, unlike ``g{G}``).

FBNet's keys (``ir-in112x112x16-out24-k5-e6-g1-s2``) are the case with every option at its default.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

from latency_lut.blocks.base import (
    DILATION,
    GATES,
    MIX,
    MIX_KERNEL,
    OUT,
    STRIDE,
    TF_SAME,
    Kind,
    Spec,
    Token,
    mix_splits,
    normalize_mix,
    normalize_tf,
    register,
    set_field,
    spec_hw,
)
from latency_lut.blocks.conv import is_depthwise, is_plain, is_pointwise, parts

BLOCK_ACTS = ("relu", "relu6", "hswish", "swish", "hswish_arith")
SE_ACTS = (*BLOCK_ACTS, "linear")  # a squeeze-excite's inner activation (linear: none, seen in foreign models)


def mid_from_expansion(cin: int, expansion: float, groups: int = 1) -> int:
    """Mid channels of an expansion: ``round(cin * e)``, rounded down to a multiple of the groups (>= groups)."""
    m = int(round(cin * expansion))
    return max(groups, m - m % groups)


def mid_channels(s: Spec) -> int:
    return s.mid_channels or mid_from_expansion(s.cin, s.expansion, s.groups)


def has_residual(s: Spec) -> bool:
    return s.stride == 1 and s.cin == s.cout and s.skip_add


def _normalize(s: Spec) -> None:
    normalize_mix(s)
    normalize_tf(s, has_padding=False)
    if s.mid_channels:
        if s.expansion != 1:
            raise ValueError("give an inverted-residual block either its expansion or its mid channels, not both")
        e, rem = divmod(s.mid_channels, s.cin)
        if not rem and mid_from_expansion(s.cin, e, s.groups) == s.mid_channels:
            set_field(s, "expansion", e)
            set_field(s, "mid_channels", 0)
    if not s.hidden and (s.gate or s.se_act):
        raise ValueError("a squeeze-excite gate or activation needs squeeze-excite hidden channels (hidden >= 1)")
    if s.gate == "sigmoid":
        set_field(s, "gate", "")
    if s.se_act == "relu":
        set_field(s, "se_act", "")
    if not (s.stride == 1 and s.cin == s.cout):
        set_field(s, "skip_add", True)  # no residual is possible: "nores" would say nothing


def _check(s: Spec) -> None:
    mid = mid_channels(s)
    if s.cin % s.groups or s.cout % s.groups or mid % s.groups:
        raise ValueError(f"channels {s.cin}->{mid}->{s.cout} are not divisible by groups {s.groups}")
    if not s.expand and mid != s.cin:
        raise ValueError(f"a block without expansion conv (noexp) needs mid channels = input channels {s.cin}, "
                         f"got {mid}")
    if s.gate and s.gate not in GATES:
        raise ValueError(f"a squeeze-excite gate is sigmoid or hsigmoid (got {s.gate!r})")
    if s.se_act and s.se_act not in SE_ACTS:
        raise ValueError(f"squeeze-excite inner activation must be one of {', '.join(SE_ACTS)}, got {s.se_act!r}")
    if s.groups > 1 and (s.expand_groups > 1 or s.proj_groups > 1):
        raise ValueError("give a block either grouped 1x1 convs with a shuffle (g) or split ones (xg, pg)")
    if s.expand_groups > 1 and not s.expand:
        raise ValueError("a split expansion conv (xg) needs an expansion conv")


def _hw(s: Spec) -> tuple[int, int]:
    return spec_hw(s)


def _dw_taps(s: Spec) -> int:
    """Weights of the depthwise conv (mixed kernels: one per channel part)."""
    mid = mid_channels(s)
    if not s.mix:
        return mid * s.kernel**2
    return sum(c * k**2 for c, k in zip(mix_splits(mid, len(s.mix)), s.mix))


def _flops(s: Spec) -> int:
    mid, g = mid_channels(s), s.groups
    ho, wo = _hw(s)
    pw1 = s.h * s.w * s.cin * mid // (g * s.expand_groups) if s.expand else 0
    dw = ho * wo * _dw_taps(s)
    se = ho * wo * mid + 2 * mid * s.hidden if s.hidden else 0
    return pw1 + dw + se + ho * wo * mid * s.cout // (g * s.proj_groups)


def _params(s: Spec) -> int:
    mid, g = mid_channels(s), s.groups
    pw1 = s.cin * mid // (g * s.expand_groups) + 2 * mid if s.expand else 0
    dw = _dw_taps(s) + 2 * mid
    se = 2 * mid * s.hidden + mid + s.hidden if s.hidden else 0
    return pw1 + dw + se + mid * s.cout // (g * s.proj_groups) + 2 * s.cout


@functools.cache
def _torch_classes() -> SimpleNamespace:
    """The torch module of this kind, defined on first use so that importing the registry needs no torch."""
    import torch
    from torch import nn

    from latency_lut.blocks.layers import ChannelShuffle, SqueezeExcite, conv_bn_act, spec_conv_bn_act, split_pointwise

    class InvertedResidual(nn.Module):
        """1x1 (groups g) -> shuffle -> KxK depthwise (stride) -> [SE] -> 1x1 (groups g), residual if shapes match.

        ``spec`` is kept so that the decomposition of a model built from these blocks reads the block it is.
        """

        def __init__(self, spec: Spec):
            super().__init__()
            mid, g, act = mid_channels(spec), spec.groups, spec.activation
            self.spec = spec
            xg, pg = spec.expand_groups, spec.proj_groups
            self.pw = nn.Identity() if not spec.expand else split_pointwise(spec.cin, mid, xg, act) if xg > 1 \
                else conv_bn_act(spec.cin, mid, 1, groups=g, act=act)
            self.shuffle = ChannelShuffle(g) if g > 1 else nn.Identity()
            self.dw = spec_conv_bn_act(spec, mid, mid, mid, act) if spec.mix or spec.dilation > 1 or spec.tf \
                else conv_bn_act(mid, mid, spec.kernel, spec.stride, groups=mid, act=act)
            self.se = SqueezeExcite(mid, spec.hidden, spec.gate or "sigmoid", spec.se_act or "relu") \
                if spec.hidden else nn.Identity()
            self.pwl = split_pointwise(mid, spec.cout, pg, "linear") if pg > 1 \
                else conv_bn_act(mid, spec.cout, 1, groups=g, act="linear")
            self.residual = has_residual(spec)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.pwl(self.se(self.dw(self.shuffle(self.pw(x)))))
            return x + y if self.residual else y

    InvertedResidual.__qualname__ = "InvertedResidual"
    return SimpleNamespace(InvertedResidual=InvertedResidual)


def __getattr__(name: str):  # ``from latency_lut.blocks.mbconv import InvertedResidual`` (imports torch)
    if name == "InvertedResidual":  # only the class names: import machinery probes other attributes
        return getattr(_torch_classes(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _grouped_1x1(s: Spec) -> bool:
    return is_plain(s) and s.kernel == 1 and s.stride == 1 and s.groups > 1 and not s.mix


def _match(ch, i: int):  # noqa: ANN001 - a ``latency_lut.decompose.units.Chain``
    """[1x1 conv + act [-> shuffle]] -> KxK depthwise + act -> [squeeze-excite] -> 1x1 conv (linear) [-> residual
    add], in a foreign model's primitive ops; grouped 1x1 convs (FBNet's g2) come with a channel shuffle. Returns
    the block's spec fields and the index past its last op."""
    a = ch.spec(i)
    expand, j, g = 0, i, 1
    if (is_pointwise(a) or _grouped_1x1(a)) and a.activation != "linear":
        expand, nxt = a.cout, ch.next(i)
        if nxt is None:
            return None
        if a.groups > 1:
            g, shuf = a.groups, ch.spec(nxt)
            if shuf.kind != "shuffle" or shuf.groups != g or (nxt := ch.next(nxt)) is None:
                return None
        j = nxt
    b = ch.spec(j)
    if not is_depthwise(b, expand or None) or (expand and b.activation != a.activation):
        return None
    mid, act = b.cout, b.activation
    k = ch.next(j)
    if k is None:
        return None
    c = ch.spec(k)
    hidden, gate, se_act = 0, "", ""
    if c.kind == "se" and c.cin == mid and (c.h, c.w) == b.out_hw:
        hidden, gate, se_act = c.hidden, c.activation, c.se_act
        k = ch.next(k)
        if k is None:
            return None
        c = ch.spec(k)
    if not ((is_pointwise(c) if g == 1 else _grouped_1x1(c) and c.groups == g) and c.activation == "linear"
            and c.cin == mid):
        return None
    end = k + 1
    cin = a.cin if expand else b.cin
    residual = b.stride == 1 and cin == c.cout and end < len(ch) and ch.adds(end, i, k)
    fields = dict(kind="ir", cin=cin, h=a.h, w=a.w, cout=c.cout, kernel=b.kernel, stride=b.stride, groups=g, act=act,
                  mid_channels=mid, expand=bool(expand), hidden=hidden, gate=gate, se_act=se_act,
                  dilation=b.dilation, tf=b.tf, skip_add=residual, mix=b.mix,
                  expand_groups=parts(a) if expand and g == 1 else 1, proj_groups=parts(c) if g == 1 else 1)
    return fields, end + (1 if residual else 0)


def _label(s: Spec) -> str:
    kk = "_".join(str(v) for v in s.mix) if s.mix else str(s.kernel)
    e = f" x{mid_channels(s) / s.cin:.3g}" if s.expand else " dw-sep"
    g = f" g{s.groups}" if s.groups > 1 else ""
    return f"ir k{kk}/{s.stride}{e}{g}{' se' if s.hidden else ''} {s.activation}"


IR = register(Kind(
    "ir",
    (
        OUT, MIX_KERNEL, MIX,
        Token("expansion", "e", kind="num", show=lambda s: not s.mid_channels),
        Token("mid_channels", "mid"),
        Token("groups", "g", required=True),
        Token("expand_groups", "xg"), Token("proj_groups", "pg"),
        STRIDE, DILATION, TF_SAME,
        Token("hidden", "se"),
        Token("gate", "gate", kind="enum", choices=GATES),
        Token("se_act", "seact", kind="enum", choices=SE_ACTS),
        Token("expand", "noexp", kind="flag", flag_value=False),
        Token("skip_add", "nores", kind="flag", flag_value=False),
    ),
    lambda s: _torch_classes().InvertedResidual(s),
    doc=__doc__.split("\n\n")[1],
    default_act="relu", acts=BLOCK_ACTS,
    flops=_flops, params=_params, out_hw=_hw,
    normalize=_normalize, check=_check, pattern=_match, label=_label, shuffles=lambda s: s.groups > 1,
    meta={"mid": mid_channels, "has_residual": has_residual},
))
