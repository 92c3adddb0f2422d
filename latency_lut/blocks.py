"""Torch modules for op specs: the one definition of every block's structure.

The micro-benchmarks, the whole-network models and FLOP counting all go through :func:`build_op`, so a block
measured alone is exactly the block that appears inside a network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from latency_lut.ops import OpSpec


class ConvBNReLU(nn.Sequential):
    """KxK conv (padding K//2, no bias) + BatchNorm, followed by ReLU when ``relu``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True):
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle. Same function either way; ``channels_last`` only changes how it lowers.

    An NCHW reshape of the channel axis blocks the TFLite converter's layout pass and leaves three TRANSPOSEs in an
    NHWC model; written over an explicit channels-last view it lowers to the RESHAPE-TRANSPOSE-RESHAPE that a
    deployed NHWC network runs. The exporter switches it on for TFLite (see :func:`use_channels_last`).
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


def use_channels_last(module: nn.Module) -> nn.Module:
    """Lower layout-sensitive ops for an NHWC target (TFLite); the computed function does not change."""
    for m in module.modules():
        if isinstance(m, ChannelShuffle):
            m.channels_last = True
    return module


class InvertedResidual(nn.Module):
    """FBNet block: 1x1 (groups g) -> shuffle -> KxK depthwise (stride) -> 1x1 (groups g), residual if shapes match.

    The first 1x1 conv is kept when the expansion is 1, as in the paper.
    """

    def __init__(self, spec: OpSpec):
        super().__init__()
        mid, g = spec.mid, spec.groups
        self.pw = ConvBNReLU(spec.cin, mid, 1, groups=g)
        self.shuffle = ChannelShuffle(g) if g > 1 else nn.Identity()
        self.dw = ConvBNReLU(mid, mid, spec.kernel, spec.stride, groups=mid)
        self.pwl = ConvBNReLU(mid, spec.cout, 1, groups=g, relu=False)
        self.residual = spec.has_residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pwl(self.dw(self.shuffle(self.pw(x))))
        return x + y if self.residual else y


class GlobalAvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def build_op(spec: OpSpec) -> nn.Module:
    """The torch module of one op spec, in eval mode, with weights that depend only on the spec."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed(spec.key))
        return _build_op(spec)


def _seed(key: str) -> int:
    import zlib

    return zlib.crc32(key.encode())


def _build_op(spec: OpSpec) -> nn.Module:
    if spec.kind == "conv":
        m: nn.Module = ConvBNReLU(spec.cin, spec.cout, spec.kernel, spec.stride)
    elif spec.kind == "ir":
        m = InvertedResidual(spec)
    elif spec.kind == "skip":
        m = nn.Identity() if spec.is_identity else ConvBNReLU(spec.cin, spec.cout, 1, spec.stride)
    elif spec.kind == "gap":
        m = GlobalAvgPool()
    elif spec.kind == "fc":
        m = nn.Linear(spec.cin, spec.cout)
    else:  # pragma: no cover - OpSpec validates kinds
        raise ValueError(spec.kind)
    _init_batchnorm(m)
    return m.eval()


def build_network(specs: Sequence[OpSpec]) -> nn.Sequential:
    """A whole network: the ops of ``specs`` in order (the same modules the micro-benchmarks measure)."""
    return nn.Sequential(*(build_op(s) for s in specs)).eval()


def _init_batchnorm(m: nn.Module) -> None:
    # Non-trivial BN statistics so that no runtime can constant-fold a block into something cheaper than the
    # trained network would be; fixed seed so exports are reproducible.
    gen = torch.Generator().manual_seed(0)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            with torch.no_grad():
                mod.running_mean.copy_(torch.randn(mod.num_features, generator=gen) * 0.1)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=gen) + 0.5)
