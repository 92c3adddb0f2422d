"""Torch pieces shared by several block kinds. Imported only where a module is built (it imports torch)."""

from __future__ import annotations

import torch
from torch import nn


def activation(name: str, inplace: bool = False) -> nn.Module:
    """The torch module of an activation name of the key grammar (``linear`` = none)."""
    if name == "relu":
        return nn.ReLU(inplace=inplace)
    return {"relu6": nn.ReLU6, "hswish": nn.Hardswish, "hsigmoid": nn.Hardsigmoid, "sigmoid": nn.Sigmoid,
            "swish": nn.SiLU, "linear": nn.Identity}[name]()


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
