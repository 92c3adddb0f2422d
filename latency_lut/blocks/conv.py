"""Convolutions: ``conv`` (KxK conv + BN + activation, any groups) and FBNet's ``skip`` candidate."""

from __future__ import annotations

from latency_lut.blocks.base import ACTS, KERNEL, OUT, PADDING, STRIDE, Kind, Spec, Token, conv_out, register


def _conv_hw(s: Spec) -> tuple[int, int]:
    return (conv_out(s.h, s.kernel, s.stride, s.padding), conv_out(s.w, s.kernel, s.stride, s.padding))


def _conv_flops(s: Spec) -> int:
    ho, wo = _conv_hw(s)
    return ho * wo * s.cout * s.cin // s.groups * s.kernel**2


def _groups_divide(s: Spec) -> None:
    if s.cin % s.groups or s.cout % s.groups:
        raise ValueError(f"channels {s.cin}->{s.cout} are not divisible by groups {s.groups}")


def _build_conv(s: Spec):  # -> nn.Module
    from latency_lut.blocks.layers import conv_bn_act

    return conv_bn_act(s.cin, s.cout, s.kernel, s.stride, s.groups, s.activation, s.padding)


CONV = register(Kind(
    "conv",
    (OUT, KERNEL, STRIDE, PADDING, Token("groups", "g")),
    _build_conv,
    doc="conv-in{H}x{W}x{C}-out{C'}-k{K}-s{S}[-p{P}][-g{G}][-{act}]: KxK conv (groups G) + BN + act (default relu)."
        " A depthwise conv is G = C = C'.",
    default_act="relu", acts=ACTS,
    flops=_conv_flops,
    params=lambda s: s.cin // s.groups * s.cout * s.kernel**2 + 2 * s.cout,
    out_hw=_conv_hw,
    check=_groups_divide,
))


def _skip_identity(s: Spec) -> bool:
    return s.stride == 1 and s.cin == s.cout


def _skip_hw(s: Spec) -> tuple[int, int]:
    return (conv_out(s.h, 1, s.stride), conv_out(s.w, 1, s.stride))


def _build_skip(s: Spec):  # -> nn.Module
    from torch import nn

    from latency_lut.blocks.layers import conv_bn_act

    return nn.Identity() if _skip_identity(s) else conv_bn_act(s.cin, s.cout, 1, s.stride)


SKIP = register(Kind(
    "skip",
    (OUT, STRIDE),
    _build_skip,
    doc="skip-in{H}x{W}x{C}-out{C'}-s{S}: identity, or (stride or channels change) 1x1 projection conv + BN + ReLU,"
        " as HW-NAS-Bench does.",
    default_act="relu", acts=("relu",),
    flops=lambda s: 0 if _skip_identity(s) else _skip_hw(s)[0] * _skip_hw(s)[1] * s.cin * s.cout,
    params=lambda s: 0 if _skip_identity(s) else s.cin * s.cout + 2 * s.cout,
    out_hw=_skip_hw,
    is_identity=_skip_identity,
))
