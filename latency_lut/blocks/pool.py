"""Pooling: ``gap`` (global average pool + flatten), ``maxpool`` and ``avgpool``."""

from __future__ import annotations

from latency_lut.blocks.base import KERNEL, PADDING, STRIDE, Kind, Spec, conv_out, register


def _build_gap(s: Spec):  # -> nn.Module
    from latency_lut.blocks.layers import GlobalAvgPool

    return GlobalAvgPool()


GAP = register(Kind(
    "gap", (), _build_gap,
    doc="gap-in{H}x{W}x{C}: global average pool (+ flatten).",
    flops=lambda s: s.h * s.w * s.cin, out_hw=lambda s: (1, 1), flat_out=True,
))


def _pool_hw(s: Spec) -> tuple[int, int]:
    return (conv_out(s.h, s.kernel, s.stride, s.padding), conv_out(s.w, s.kernel, s.stride, s.padding))


def _pool(name: str):
    def build(s: Spec):  # -> nn.Module
        from torch import nn

        pad = s.kernel // 2 if s.padding < 0 else s.padding
        return (nn.MaxPool2d if name == "maxpool" else nn.AvgPool2d)(s.kernel, s.stride, pad)
    return build


MAXPOOL = register(Kind(
    "maxpool", (KERNEL, STRIDE, PADDING), _pool("maxpool"),
    doc="maxpool-in{H}x{W}x{C}-k{K}-s{S}[-p{P}]: max pooling.", out_hw=_pool_hw,
))

AVGPOOL = register(Kind(
    "avgpool", (KERNEL, STRIDE, PADDING), _pool("avgpool"),
    doc="avgpool-in{H}x{W}x{C}-k{K}-s{S}[-p{P}]: average pooling.", out_hw=_pool_hw,
    flops=lambda s: _pool_hw(s)[0] * _pool_hw(s)[1] * s.cin * s.kernel**2,
))
