"""Torch pieces shared by several block kinds. Imported only where a module is built (it imports torch)."""

from __future__ import annotations

import torch
from torch import nn


class ArithHardSigmoid(nn.Module):
    """relu6(x + 3) / 6 written as arithmetic, as many model zoos do (exported as add, clip, div)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.relu6(x + 3.0) / 6.0


class ArithHardSwish(nn.Module):
    """x * relu6(x + 3) / 6 written as arithmetic (exported as add, clip, div, mul)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.nn.functional.relu6(x + 3.0) / 6.0


def activation(name: str, inplace: bool = False) -> nn.Module:
    """The torch module of an activation name of the key grammar (``linear`` = none)."""
    if name == "relu":
        return nn.ReLU(inplace=inplace)
    return {"relu6": nn.ReLU6, "hswish": nn.Hardswish, "hsigmoid": nn.Hardsigmoid, "sigmoid": nn.Sigmoid,
            "swish": nn.SiLU, "linear": nn.Identity, "hswish_arith": ArithHardSwish,
            "hsigmoid_arith": ArithHardSigmoid}[name]()


def padded(spec, layer: nn.Module) -> nn.Module:  # noqa: ANN001 - an OpSpec
    """``layer`` (a conv or pool built with padding 0) behind the explicit TF "same" pad of ``spec``."""
    from latency_lut.blocks.base import tf_same_pads

    top, bottom = tf_same_pads(spec.h, spec.kernel, spec.stride, spec.dilation)
    left, right = tf_same_pads(spec.w, spec.kernel, spec.stride, spec.dilation)
    return nn.Sequential(nn.ZeroPad2d((left, right, top, bottom)), layer)


class MixedConv(nn.Module):
    """MixNet's mixed conv: the input split into channel parts, each convolved by its own conv, concatenated."""

    def __init__(self, convs: list[nn.Module]):
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.splits = [next(c for c in m.modules() if isinstance(c, nn.Conv2d)).in_channels for m in convs]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.split(x, self.splits, 1)
        return torch.cat([c(p) for c, p in zip(self.convs, parts)], 1)


def spec_conv(spec, cin: int, cout: int, groups: int, kernels: tuple[int, ...] = ()) -> nn.Module:  # noqa: ANN001
    """The KxK conv of ``spec`` (stride, dilation, padding or TF "same"), without bias; with ``kernels``, a
    mixed-kernel conv (one part per kernel, depthwise parts when ``groups`` > 1)."""
    from dataclasses import replace

    from latency_lut.blocks.base import mix_splits

    if kernels:
        return MixedConv([spec_conv(replace(spec, kernel=k, mix=()), ci, co, ci if groups > 1 else 1)
                          for k, ci, co in zip(kernels, mix_splits(cin, len(kernels)),
                                               mix_splits(cout, len(kernels)))])
    padding = getattr(spec, "padding", -1)
    pad = 0 if spec.tf else (spec.kernel // 2) * spec.dilation if padding < 0 else padding
    conv = nn.Conv2d(cin, cout, spec.kernel, spec.stride, pad, dilation=spec.dilation, groups=groups, bias=False)
    return padded(spec, conv) if spec.tf else conv


def spec_conv_bn_act(spec, cin: int, cout: int, groups: int, act: str) -> nn.Sequential:  # noqa: ANN001
    """``spec_conv`` + BatchNorm + activation, for convs with mixed kernels, dilation or TF padding."""
    return nn.Sequential(spec_conv(spec, cin, cout, groups, spec.mix), nn.BatchNorm2d(cout), activation(act))


def split_pointwise(cin: int, cout: int, parts: int, act: str) -> nn.Sequential:
    """A 1x1 conv split into ``parts`` channel parts (MixNet's grouped 1x1: split, convs, concat) + BN + act."""
    from latency_lut.blocks.base import mix_splits

    convs = [nn.Conv2d(ci, co, 1, bias=False) for ci, co in zip(mix_splits(cin, parts), mix_splits(cout, parts))]
    return nn.Sequential(MixedConv(convs), nn.BatchNorm2d(cout), activation(act))


class Slice(nn.Module):
    """The first ``cout`` channels of the input: one part of a chunk/split."""

    def __init__(self, cout: int):
        super().__init__()
        self.cout = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, : self.cout]


def conv_bn_act(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: str = "relu",
                padding: int = -1) -> nn.Sequential:
    """KxK conv (no bias; padding K//2 unless given) + BatchNorm [+ activation]."""
    pad = kernel // 2 if padding < 0 else padding
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act != "linear":
        layers.append(activation(act, inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Squeeze-excite: global pool, 1x1 conv C->M + inner act, 1x1 conv M->C + gate, channel-wise product."""

    def __init__(self, channels: int, hidden: int, gate: str = "sigmoid", inner: str = "relu"):
        super().__init__()
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.relu = activation(inner, inplace=True)
        self.expand = nn.Conv2d(hidden, channels, 1)
        self.gate = activation(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * self.gate(self.expand(self.relu(self.reduce(s))))


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle. Same function either way; ``channels_last`` only changes how it lowers.

    An NCHW reshape of the channel axis blocks the TFLite converter's layout pass and leaves three TRANSPOSEs in an
    NHWC model; written over an explicit channels-last view it lowers to the RESHAPE-TRANSPOSE-RESHAPE that a
    deployed NHWC network runs. The exporter switches it on for TFLite (see ``blocks.use_channels_last``).
    """

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups
        self.channels_last = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = self.groups
        if self.channels_last:
            y = x.permute(0, 2, 3, 1).reshape(n, h, w, g, c // g).transpose(3, 4).reshape(n, h, w, c)
            return y.permute(0, 3, 1, 2)
        return x.reshape(n, g, c // g, h, w).transpose(1, 2).reshape(n, c, h, w)


class GlobalAvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class WithConstant(nn.Module):
    """A binary op (add, concat) measured alone: its second operand is a fixed tensor the runtime cannot fold
    away, because the first operand is the model input."""

    def __init__(self, op: str, other_shape: tuple[int, ...], act: str = "linear"):
        super().__init__()
        self.op = op
        self.register_buffer("other", torch.randn(*other_shape, generator=torch.Generator().manual_seed(0)))
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x + self.other if self.op == "add" else torch.cat([x, self.other], dim=1)
        return self.act(y)
