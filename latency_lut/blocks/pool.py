"""Pooling: ``gap`` (global average pool + flatten), ``maxpool`` and ``avgpool``."""

from __future__ import annotations

from latency_lut.blocks.base import (
    KERNEL,
    PADDING,
    STRIDE,
    TF_SAME,
    Kind,
    Spec,
    Token,
    conv_out,
    normalize_tf,
    register,
    set_field,
    spec_hw,
)


def _build_gap(s: Spec):  # -> nn.Module
    from latency_lut.blocks.layers import GlobalAvgPool

    return GlobalAvgPool()


GAP = register(Kind(
    "gap", (), _build_gap,
    doc="gap-in{H}x{W}x{C}: global average pool (+ flatten).",
    flops=lambda s: s.h * s.w * s.cin, out_hw=lambda s: (1, 1), flat_out=True,
))


def _pool_hw(s: Spec) -> tuple[int, int]:
    return spec_hw(s)


def _normalize(s: Spec) -> None:
    normalize_tf(s)
    if s.ceil and all(conv_out(n, s.kernel, s.stride, s.padding, ceil=True) == conv_out(n, s.kernel, s.stride,
                                                                                      s.padding) for n in (s.h, s.w)):
        set_field(s, "ceil", False)  # ceil_mode that changes nothing is the ordinary pool


def _pool(name: str):
    def build(s: Spec):  # -> nn.Module
        from torch import nn

        from latency_lut.blocks.layers import padded

        pad = 0 if s.tf else s.kernel // 2 if s.padding < 0 else s.padding
        pool = (nn.MaxPool2d if name == "maxpool" else nn.AvgPool2d)(s.kernel, s.stride, pad, ceil_mode=s.ceil)
        return padded(s, pool) if s.tf else pool
    return build


_POOL_TOKENS = (KERNEL, STRIDE, PADDING, TF_SAME, Token("ceil", "ceil", kind="flag", flag_value=True))
_POOL_DOC = "-in{H}x{W}x{C}-k{K}-s{S}[-p{P}][-tf][-ceil]: {what} pooling (tf: TensorFlow 'same' padding; ceil:" \
    " ceil_mode)."


MAXPOOL = register(Kind(
    "maxpool", _POOL_TOKENS, _pool("maxpool"),
    doc="maxpool" + _POOL_DOC.replace("{what}", "max"), out_hw=_pool_hw, normalize=_normalize,
    label=lambda s: f"maxpool{s.kernel}x{s.kernel}/{s.stride}",
))

AVGPOOL = register(Kind(
    "avgpool", _POOL_TOKENS, _pool("avgpool"),
    doc="avgpool" + _POOL_DOC.replace("{what}", "average"), out_hw=_pool_hw, normalize=_normalize,
    label=lambda s: f"avgpool{s.kernel}x{s.kernel}/{s.stride}",
    flops=lambda s: _pool_hw(s)[0] * _pool_hw(s)[1] * s.cin * s.kernel**2,
))
