"""ShuffleNet's channel shuffle (``shuffle``) and ShuffleNetV2's unit (``shufflev2``)."""

from __future__ import annotations

import functools
from types import SimpleNamespace

from latency_lut.blocks.base import KERNEL, OUT, STRIDE, Kind, Spec, Token, register, spec_hw
from latency_lut.blocks.conv import is_depthwise, is_pointwise


def _build(s: Spec):  # -> nn.Module
    from latency_lut.blocks.layers import ChannelShuffle

    return ChannelShuffle(s.groups)


def _check(s: Spec) -> None:
    if s.cin % s.groups:
        raise ValueError(f"channels {s.cin} are not divisible by shuffle groups {s.groups}")


SHUFFLE = register(Kind(
    "shuffle", (Token("groups", "g", required=True),), _build,
    doc="shuffle-in{H}x{W}x{C}-g{G}: channel shuffle with G groups.", check=_check,
    fusible=lambda s: True,  # a reshape-transpose that the unit around it absorbs
    shuffles=lambda s: True,
))


# ---- ShuffleNetV2's unit ---------------------------------------------------------------------------------
def _v2_hw(s: Spec) -> tuple[int, int]:
    return spec_hw(s)


def _v2_check(s: Spec) -> None:
    if s.cout % 2 or (s.stride == 1 and s.cin != s.cout):
        raise ValueError("a ShuffleNetV2 unit has even output channels, and keeps its channels at stride 1")


def _v2_flops(s: Spec) -> int:
    ho, wo = _v2_hw(s)
    b, k2 = s.cout // 2, s.kernel**2
    if s.stride == 1:
        return s.h * s.w * b * b + ho * wo * b * (k2 + b)
    return ho * wo * s.cin * (k2 + b) + s.h * s.w * s.cin * b + ho * wo * b * (k2 + b)


def _v2_params(s: Spec) -> int:
    b, k2, c = s.cout // 2, s.kernel**2, s.cin
    branch = (c if s.stride > 1 else b) * b + 2 * b + b * k2 + 2 * b + b * b + 2 * b
    return branch + (c * k2 + 2 * c + c * b + 2 * b if s.stride > 1 else 0)


@functools.cache
def _torch_classes() -> SimpleNamespace:
    """The torch module of ``shufflev2``, defined on first use so that importing the registry needs no torch."""
    import torch
    from torch import nn

    from latency_lut.blocks.layers import ChannelShuffle

    class ShuffleV2Unit(nn.Module):
        def __init__(self, s: Spec):
            super().__init__()
            b, k, st, c = s.cout // 2, s.kernel, s.stride, s.cin
            cin2 = b if st == 1 else c
            self.branch1 = nn.Sequential(
                nn.Conv2d(c, c, k, st, k // 2, groups=c, bias=False), nn.BatchNorm2d(c),
                nn.Conv2d(c, b, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)) if st > 1 \
                else nn.Identity()
            self.branch2 = nn.Sequential(
                nn.Conv2d(cin2, b, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
                nn.Conv2d(b, b, k, st, k // 2, groups=b, bias=False), nn.BatchNorm2d(b),
                nn.Conv2d(b, b, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True))
            self.stride = st
            self.shuffle = ChannelShuffle(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.stride == 1:
                x1, x2 = x.chunk(2, dim=1)
                out = torch.cat((x1, self.branch2(x2)), dim=1)
            else:
                out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
            return self.shuffle(out)

    ShuffleV2Unit.__qualname__ = "ShuffleV2Unit"
    return SimpleNamespace(ShuffleV2Unit=ShuffleV2Unit)


def _match_v2(ch, i: int):  # noqa: ANN001 - a ``latency_lut.decompose.units.Chain``
    """A ShuffleNetV2 unit: split in halves, one half through 1x1 + ReLU, depthwise, 1x1 + ReLU, concat, shuffle 2
    (stride 1); or two branches on the whole input, depthwise s2 -> 1x1 + ReLU and 1x1 + ReLU -> depthwise s2 ->
    1x1 + ReLU, concat, shuffle 2 (stride 2). Returns the unit's spec fields and the index past its last op."""
    if i + 6 >= len(ch):
        return None
    s = [ch.spec(j) for j in range(i, i + 7)]

    def pw_relu(t: Spec) -> bool:
        return is_pointwise(t) and t.activation == "relu"

    def feeds(a: int, b: int) -> bool:  # op i+a's output goes to op i+b only
        return ch.users(i + a) == [i + b]

    def branch(a: int, k: int, stride: int) -> bool:  # 1x1 + ReLU -> dw (linear) -> 1x1 + ReLU at i+a
        return pw_relu(s[a]) and is_depthwise(s[a + 1], s[a].cout) and s[a + 1].activation == "linear" and \
            s[a + 1].kernel == k and s[a + 1].stride == stride and pw_relu(s[a + 2]) and \
            feeds(a, a + 1) and feeds(a + 1, a + 2)

    cat, shuf = s[5], s[6]
    if cat.kind != "concat" or shuf.kind != "shuffle" or shuf.groups != 2 or not feeds(5, 6):
        return None
    if s[0].kind == "slice" and s[1].kind == "slice":  # stride 1
        x, c = ch.inputs(i)[0], s[0].cin
        half = c // 2
        if ch.inputs(i + 1)[0] != x or s[0].cout != half or s[1].cout != c - half or ch.start(i) != 0 or \
                ch.start(i + 1) != half or ch.inputs(i + 2) != [ch.output(i + 1)] or not branch(2, s[3].kernel, 1):
            return None
        if ch.inputs(i + 5) != [ch.output(i), ch.output(i + 4)] or not (feeds(0, 5) and feeds(4, 5)):
            return None
        return dict(kind="shufflev2", cin=c, h=s[0].h, w=s[0].w, cout=c, kernel=s[3].kernel, stride=1), i + 7
    d, p = s[0], s[1]  # stride 2
    x = ch.inputs(i)[0]
    if not (is_depthwise(d) and d.activation == "linear" and d.stride == 2 and pw_relu(p) and feeds(0, 1)):
        return None
    if ch.inputs(i + 2) != [x] or not branch(2, d.kernel, 2) or not (feeds(1, 5) and feeds(4, 5)) or \
            ch.inputs(i + 5) != [ch.output(i + 1), ch.output(i + 4)] or p.cout != s[4].cout:
        return None
    return dict(kind="shufflev2", cin=d.cin, h=d.h, w=d.w, cout=2 * p.cout, kernel=d.kernel, stride=2), i + 7


SHUFFLEV2 = register(Kind(
    "shufflev2", (OUT, KERNEL, STRIDE), lambda s: _torch_classes().ShuffleV2Unit(s),
    doc="shufflev2-in{H}x{W}x{C}-out{C'}-k{K}-s{S}: ShuffleNetV2 unit, one unit: S = 1 splits the channels in halves,"
        " one half through 1x1 + BN + ReLU, KxK depthwise + BN, 1x1 + BN + ReLU, concatenated with the other half;"
        " S = 2 runs two such branches on the whole input (KxK depthwise s2 + BN, 1x1 + BN + ReLU / the three-conv"
        " branch); then a channel shuffle (2).",
    flops=_v2_flops, params=_v2_params, out_hw=_v2_hw, check=_v2_check, pattern=_match_v2, shuffles=lambda s: True,
))
