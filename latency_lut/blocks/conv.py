"""Convolutions: ``conv`` (KxK conv + BN + activation, any groups) and FBNet's ``skip`` candidate."""

from __future__ import annotations

from latency_lut.blocks.base import (
    ACTS,
    DILATION,
    MIX,
    MIX_KERNEL,
    OUT,
    PADDING,
    STRIDE,
    TF_SAME,
    Kind,
    Spec,
    Token,
    conv_out,
    mix_splits,
    normalize_mix,
    normalize_tf,
    register,
    spec_hw,
)


def _conv_hw(s: Spec) -> tuple[int, int]:
    return spec_hw(s)


def _per_part_weights(s: Spec) -> int:
    """Weights of a conv per output pixel: of each part of a mixed-kernel conv, or of the whole KxK conv."""
    if not s.mix:
        return s.cout * s.cin // s.groups * s.kernel**2
    ins = mix_splits(s.cin, len(s.mix))
    outs = ins if s.groups > 1 else mix_splits(s.cout, len(s.mix))
    return sum((1 if s.groups > 1 else ci) * co * k**2 for ci, co, k in zip(ins, outs, s.mix))


def _conv_flops(s: Spec) -> int:
    ho, wo = _conv_hw(s)
    return ho * wo * _per_part_weights(s)


def _normalize(s: Spec) -> None:
    normalize_mix(s)
    normalize_tf(s)


def _groups_divide(s: Spec) -> None:
    if s.cin % s.groups or s.cout % s.groups:
        raise ValueError(f"channels {s.cin}->{s.cout} are not divisible by groups {s.groups}")
    if s.mix and s.groups not in (1, s.cin):
        raise ValueError("a mixed-kernel conv is depthwise (groups = channels) or dense per part (groups 1)")
    if s.mix and s.groups > 1 and s.cin != s.cout:
        raise ValueError("a mixed-kernel depthwise conv keeps its channels")


def _build_conv(s: Spec):  # -> nn.Module
    from latency_lut.blocks.layers import conv_bn_act, spec_conv_bn_act

    if s.mix or s.dilation > 1 or s.tf:
        return spec_conv_bn_act(s, s.cin, s.cout, s.groups, s.activation)
    return conv_bn_act(s.cin, s.cout, s.kernel, s.stride, s.groups, s.activation, s.padding)


# ---- what the block patterns of other kinds ask of a conv in a foreign model --------------------------------
def is_plain(s: Spec) -> bool:
    """A conv with its default padding, no dilation and no TF padding."""
    return s.kind == "conv" and s.padding < 0 and s.dilation == 1 and not s.tf


def is_pointwise(s: Spec) -> bool:
    """A 1x1 conv, whole or split into equal parts (MixNet's grouped 1x1)."""
    return is_plain(s) and s.kernel == 1 and s.stride == 1 and s.groups == 1 and set(s.mix) <= {1}


def parts(s: Spec) -> int:
    """Channel parts of a split conv (1: not split)."""
    return len(s.mix) or 1


def is_depthwise(s: Spec, channels: int | None = None) -> bool:
    return s.kind == "conv" and s.padding < 0 and s.groups == s.cin == s.cout > 1 and \
        (channels is None or s.cin == channels)


def _label_conv(s: Spec) -> str:
    kind = "dwconv" if s.groups == s.cin == s.cout and s.groups > 1 else "conv"
    g = f" g{s.groups}" if s.groups > 1 and kind == "conv" else ""
    kk = "+".join(f"{v}x{v}" for v in s.mix) if s.mix else f"{s.kernel}x{s.kernel}"
    d = f" d{s.dilation}" if s.dilation > 1 else ""
    return f"{kind}{kk}/{s.stride}{g}{d} {s.activation}"


CONV = register(Kind(
    "conv",
    (OUT, MIX_KERNEL, MIX, STRIDE, PADDING, Token("groups", "g"), DILATION, TF_SAME),
    _build_conv,
    doc="conv-in{H}x{W}x{C}-out{C'}-k{K}-s{S}[-p{P}][-g{G}][-d{D}][-tf][-{act}]: KxK conv (groups G, dilation D)"
        " + BN + act (default relu). A depthwise conv is G = C = C'. The kernel may be mixed, k3_5_7: the input"
        " channels split into one part per kernel (equal, the remainder to the first, as MixNet does), each part"
        " convolved with its kernel, the outputs concatenated. -tf: TensorFlow 'same' padding (low = total // 2,"
        " high = the rest, an explicit pad before the conv in TF ports), printed only where it is asymmetric.",
    default_act="relu", acts=ACTS,
    flops=_conv_flops,
    params=lambda s: _per_part_weights(s) + 2 * s.cout,
    out_hw=_conv_hw,
    normalize=_normalize,
    check=_groups_divide,
    label=_label_conv,
    fusible=lambda s: is_depthwise(s) or s.activation == "linear",  # folded into the block around it
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
