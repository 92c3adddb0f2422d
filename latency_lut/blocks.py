"""Torch modules for op specs: the one definition of every block's structure.

The micro-benchmarks, the whole-network models and FLOP counting all go through :func:`build_op`, so a block
measured alone is exactly the block that appears inside a network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from latency_lut.ops import OpSpec, mix_splits


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


class ArithHardSigmoid(nn.Module):
    """relu6(x + 3) / 6 written as arithmetic, as many model zoos do (exported as add, clip, div)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.relu6(x + 3.0) / 6.0


class ArithHardSwish(nn.Module):
    """x * relu6(x + 3) / 6 written as arithmetic (exported as add, clip, div, mul)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.nn.functional.relu6(x + 3.0) / 6.0


def activation(name: str) -> nn.Module:
    """The torch module of an activation name of the key grammar (``linear`` = none)."""
    return {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.Hardswish, "hsigmoid": nn.Hardsigmoid,
            "sigmoid": nn.Sigmoid, "swish": nn.SiLU, "linear": nn.Identity, "hswish_arith": ArithHardSwish,
            "hsigmoid_arith": ArithHardSigmoid}[name]()


def _padded(spec: OpSpec, layer: nn.Module) -> nn.Module:
    """``layer`` (a conv or pool built with padding 0) behind the explicit TF "same" pad of ``spec``."""
    from latency_lut.ops import tf_same_pads

    top, bottom = tf_same_pads(spec.h, spec.kernel, spec.stride, spec.dilation)
    left, right = tf_same_pads(spec.w, spec.kernel, spec.stride, spec.dilation)
    return nn.Sequential(nn.ZeroPad2d((left, right, top, bottom)), layer)


def _conv(spec: OpSpec, cin: int, cout: int, groups: int, kernels: Sequence[int] = ()) -> nn.Module:
    """The KxK conv of ``spec`` (stride, dilation, padding or TF "same"), without bias; with ``kernels``, a
    mixed-kernel conv (one part per kernel)."""
    from dataclasses import replace

    if kernels:
        return MixedConv([_conv(replace(spec, kernel=k, mix=()), ci, co, ci if groups > 1 else 1)
                          for k, ci, co in zip(kernels, mix_splits(cin, len(kernels)),
                                               mix_splits(cout, len(kernels)))])
    pad = 0 if spec.tf else (spec.kernel // 2) * spec.dilation if spec.padding < 0 else spec.padding
    conv = nn.Conv2d(cin, cout, spec.kernel, spec.stride, pad, dilation=spec.dilation, groups=groups, bias=False)
    return _padded(spec, conv) if spec.tf else conv


class MixedConv(nn.Module):
    """MixNet's mixed conv: the input split into channel parts, each convolved by its own conv, concatenated."""

    def __init__(self, convs: Sequence[nn.Module]):
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.splits = [_in_channels(c) for c in convs]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.split(x, self.splits, 1)
        return torch.cat([c(p) for c, p in zip(self.convs, parts)], 1)


def _in_channels(m: nn.Module) -> int:
    return next(c for c in m.modules() if isinstance(c, nn.Conv2d)).in_channels


class ConvBNAct(nn.Sequential):
    """Generic conv of arbitrary CNNs: KxK conv (groups, padding, dilation) + BatchNorm + activation."""

    def __init__(self, spec: OpSpec):
        super().__init__(_conv(spec, spec.cin, spec.cout, spec.groups, spec.mix), nn.BatchNorm2d(spec.cout),
                         activation(spec.activation))


class MBConv(nn.Module):
    """The ``mb`` unit: [1x1 expansion + BN + act], KxK depthwise + BN + act, [squeeze-excite], 1x1 projection +
    BN, [residual add] -- the inverted residual of MobileNetV2/V3, MnasNet, EfficientNet and their kin."""

    def __init__(self, spec: OpSpec):
        super().__init__()
        from dataclasses import replace

        mid, act = spec.mid, spec.activation
        one = replace(spec, kind="conv", kernel=1, stride=1, act="", expand=0, hidden=0, se_act="", gate="",
                      nores=False, mix=(), proj_groups=1, dilation=1, tf=False, groups=1)
        self.pw = nn.Sequential(_conv(one, spec.cin, mid, 1, (1,) * spec.groups if spec.groups > 1 else ()),
                                nn.BatchNorm2d(mid), activation(act)) if spec.expand else nn.Identity()
        self.dw = nn.Sequential(_conv(spec, mid, mid, mid, spec.mix), nn.BatchNorm2d(mid), activation(act))
        self.se = SqueezeExcite(mid, spec.hidden, spec.gate or "sigmoid", spec.se_act or "relu") if spec.hidden \
            else nn.Identity()
        pg = spec.proj_groups
        self.pwl = nn.Sequential(_conv(one, mid, spec.cout, 1, (1,) * pg if pg > 1 else ()),
                                 nn.BatchNorm2d(spec.cout))
        self.residual = spec.has_residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pwl(self.se(self.dw(self.pw(x))))
        return x + y if self.residual else y


class ShuffleV2Unit(nn.Module):
    """The ``shufflev2`` unit (ShuffleNetV2): split or two branches, concat, channel shuffle."""

    def __init__(self, spec: OpSpec):
        super().__init__()
        b, k, s, c = spec.cout // 2, spec.kernel, spec.stride, spec.cin
        cin2 = b if s == 1 else c
        self.branch1 = nn.Sequential(
            nn.Conv2d(c, c, k, s, k // 2, groups=c, bias=False), nn.BatchNorm2d(c),
            nn.Conv2d(c, b, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)) if s > 1 else nn.Identity()
        self.branch2 = nn.Sequential(
            nn.Conv2d(cin2, b, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
            nn.Conv2d(b, b, k, s, k // 2, groups=b, bias=False), nn.BatchNorm2d(b),
            nn.Conv2d(b, b, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True))
        self.stride = s
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return self.shuffle(out)


class Slice(nn.Module):
    """The first ``cout`` channels of the input: one part of a chunk/split."""

    def __init__(self, cout: int):
        super().__init__()
        self.cout = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, : self.cout]


class SqueezeExcite(nn.Module):
    """Squeeze-excite: global pool, 1x1 conv C->M + act (ReLU), 1x1 conv M->C + gate, channel-wise product."""

    def __init__(self, channels: int, hidden: int, gate: str = "sigmoid", inner: str = "relu"):
        super().__init__()
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.relu = activation(inner)
        self.expand = nn.Conv2d(hidden, channels, 1)
        self.gate = activation(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * self.gate(self.expand(self.relu(self.reduce(s))))


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


def build_op(spec: OpSpec, position: int = 0) -> nn.Module:
    """The torch module of one op spec, in eval mode, with weights that depend only on the spec and position.

    ``position`` keeps two identical blocks of one network from getting identical weights, which exporters would
    deduplicate and runtimes could share in cache, unlike a trained network.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed(f"{spec.key}@{position}" if position else spec.key))
        return _build_op(spec)


def _seed(key: str) -> int:
    import zlib

    return zlib.crc32(key.encode())


def _build_op(spec: OpSpec) -> nn.Module:
    if spec.kind == "conv" and (spec.act or spec.groups > 1 or spec.padding >= 0 or spec.dilation > 1 or spec.tf):
        m: nn.Module = ConvBNAct(spec)
    elif spec.kind == "conv":
        m = ConvBNReLU(spec.cin, spec.cout, spec.kernel, spec.stride)
    elif spec.kind == "ir":
        m = InvertedResidual(spec)
    elif spec.kind == "mb":
        m = MBConv(spec)
    elif spec.kind == "shufflev2":
        m = ShuffleV2Unit(spec)
    elif spec.kind == "skip":
        m = nn.Identity() if spec.is_identity else ConvBNReLU(spec.cin, spec.cout, 1, spec.stride)
    elif spec.kind == "gap":
        m = GlobalAvgPool()
    elif spec.kind == "fc":
        m = nn.Linear(spec.cin, spec.cout)
        if spec.act:
            m = nn.Sequential(m, activation(spec.act))
    else:
        m = _build_generic(spec)
    return _finish(m)


def _finish(m: nn.Module) -> nn.Module:
    _init_batchnorm(m)
    return m.eval()


def _build_generic(spec: OpSpec) -> nn.Module:
    """Modules of the op kinds that describe arbitrary CNNs (see the key grammar in ``latency_lut.ops``)."""
    pad = 0 if spec.tf else spec.kernel // 2 if spec.padding < 0 else spec.padding
    if spec.kind == "se":
        return SqueezeExcite(spec.cin, spec.hidden, spec.activation, spec.se_act or "relu")
    if spec.kind == "add":
        return WithConstant("add", spec.input_shape, spec.activation)
    if spec.kind == "concat":
        return WithConstant("concat", (1, spec.cout - spec.cin, spec.h, spec.w))
    if spec.kind == "shuffle":
        return ChannelShuffle(spec.groups)
    if spec.kind in ("maxpool", "avgpool"):
        pool = (nn.MaxPool2d if spec.kind == "maxpool" else nn.AvgPool2d)(spec.kernel, spec.stride, pad,
                                                                         ceil_mode=spec.ceil)
        return _padded(spec, pool) if spec.tf else pool
    if spec.kind == "slice":
        return Slice(spec.cout)
    if spec.kind == "bn":
        return nn.Sequential(nn.BatchNorm2d(spec.cin), activation(spec.activation))
    if spec.kind == "act":
        return activation(spec.activation)
    raise ValueError(spec.kind)  # pragma: no cover - OpSpec validates kinds


def build_network(specs: Sequence[OpSpec]) -> nn.Sequential:
    """A whole network: the ops of ``specs`` in order (the same modules the micro-benchmarks measure)."""
    return nn.Sequential(*(build_op(s, i) for i, s in enumerate(specs))).eval()


def _init_batchnorm(m: nn.Module) -> None:
    # Non-trivial BN statistics so that no runtime can constant-fold a block into something cheaper than the
    # trained network would be; fixed seed so exports are reproducible.
    gen = torch.Generator().manual_seed(0)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            with torch.no_grad():
                mod.running_mean.copy_(torch.randn(mod.num_features, generator=gen) * 0.1)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=gen) + 0.5)
