"""Inverted-residual / MBConv blocks (``ir``): FBNet, ProxylessNAS, MobileNetV2/V3, Once-for-All, MnasNet.

One kind covers them all::

    ir-in{H}x{W}x{C}-out{C'}-k{K}-(e{E}|mid{M})-g{G}-s{S}[-se{R}][-gate{gate}][-seact{act}][-noexp][-nores][-{act}]

- ``e{E}``: mid channels from the expansion, ``round(C * E)`` rounded down to a multiple of G (FBNet); ``mid{M}``:
  absolute mid channels (OFA's ``expand``), printed only when no integer expansion gives them.
- ``g{G}``: the two 1x1 convs are group convs, with a channel shuffle after the first (FBNet's ``_g2``).
- ``se{R}``: squeeze-excite after the depthwise conv with R hidden channels; gate sigmoid (default) or hsigmoid,
  inner activation relu (default) or another.
- ``noexp``: no 1x1 expansion conv (MBConv with expansion 1, as in MobileNetV2/V3 and ProxylessNAS; FBNet keeps
  it, so its ``e1`` blocks have it).
- ``nores``: no residual add even though stride 1 and C = C' would allow one.
- ``{act}``: activation of the expansion and depthwise convs: relu (default), relu6, hswish or swish; the
  projection conv is linear.

FBNet's keys (``ir-in112x112x16-out24-k5-e6-g1-s2``) are the case with every option at its default.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

from latency_lut.blocks.base import GATES, KERNEL, OUT, STRIDE, Kind, Spec, Token, conv_out, register, set_field

BLOCK_ACTS = ("relu", "relu6", "hswish", "swish")


def mid_from_expansion(cin: int, expansion: float, groups: int = 1) -> int:
    """Mid channels of an expansion: ``round(cin * e)``, rounded down to a multiple of the groups (>= groups)."""
    m = int(round(cin * expansion))
    return max(groups, m - m % groups)


def mid_channels(s: Spec) -> int:
    return s.mid_channels or mid_from_expansion(s.cin, s.expansion, s.groups)


def has_residual(s: Spec) -> bool:
    return s.stride == 1 and s.cin == s.cout and s.skip_add


def _normalize(s: Spec) -> None:
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
    if s.se_act and s.se_act not in BLOCK_ACTS:
        raise ValueError(f"squeeze-excite inner activation must be one of {', '.join(BLOCK_ACTS)}, got {s.se_act!r}")


def _hw(s: Spec) -> tuple[int, int]:
    return (conv_out(s.h, s.kernel, s.stride), conv_out(s.w, s.kernel, s.stride))


def _flops(s: Spec) -> int:
    mid, g = mid_channels(s), s.groups
    ho, wo = _hw(s)
    pw1 = s.h * s.w * s.cin * mid // g if s.expand else 0
    dw = ho * wo * mid * s.kernel**2
    se = ho * wo * mid + 2 * mid * s.hidden if s.hidden else 0
    return pw1 + dw + se + ho * wo * mid * s.cout // g


def _params(s: Spec) -> int:
    mid, g = mid_channels(s), s.groups
    pw1 = s.cin * mid // g + 2 * mid if s.expand else 0
    dw = mid * s.kernel**2 + 2 * mid
    se = 2 * mid * s.hidden + mid + s.hidden if s.hidden else 0
    return pw1 + dw + se + mid * s.cout // g + 2 * s.cout


@functools.cache
def _torch_classes() -> SimpleNamespace:
    """The torch module of this kind, defined on first use so that importing the registry needs no torch."""
    import torch
    from torch import nn

    from latency_lut.blocks.layers import ChannelShuffle, SqueezeExcite, conv_bn_act

    class InvertedResidual(nn.Module):
        """1x1 (groups g) -> shuffle -> KxK depthwise (stride) -> [SE] -> 1x1 (groups g), residual if shapes match.

        ``spec`` is kept so that the decomposition of a model built from these blocks reads the block it is.
        """

        def __init__(self, spec: Spec):
            super().__init__()
            mid, g, act = mid_channels(spec), spec.groups, spec.activation
            self.spec = spec
            self.pw = conv_bn_act(spec.cin, mid, 1, groups=g, act=act) if spec.expand else nn.Identity()
            self.shuffle = ChannelShuffle(g) if g > 1 else nn.Identity()
            self.dw = conv_bn_act(mid, mid, spec.kernel, spec.stride, groups=mid, act=act)
            self.se = SqueezeExcite(mid, spec.hidden, spec.gate or "sigmoid", spec.se_act or "relu") \
                if spec.hidden else nn.Identity()
            self.pwl = conv_bn_act(mid, spec.cout, 1, groups=g, act="linear")
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


IR = register(Kind(
    "ir",
    (
        OUT, KERNEL,
        Token("expansion", "e", kind="num", show=lambda s: not s.mid_channels),
        Token("mid_channels", "mid"),
        Token("groups", "g", required=True),
        STRIDE,
        Token("hidden", "se"),
        Token("gate", "gate", kind="enum", choices=GATES),
        Token("se_act", "seact", kind="enum", choices=BLOCK_ACTS),
        Token("expand", "noexp", kind="flag", flag_value=False),
        Token("skip_add", "nores", kind="flag", flag_value=False),
    ),
    lambda s: _torch_classes().InvertedResidual(s),
    doc=__doc__.split("\n\n")[1],
    default_act="relu", acts=BLOCK_ACTS,
    flops=_flops, params=_params, out_hw=_hw,
    normalize=_normalize, check=_check,
    meta={"mid": mid_channels, "has_residual": has_residual},
))
