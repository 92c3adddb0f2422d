"""The block registry: every kind of benchmarkable unit, each defined once.

A kind (``blocks.base.Kind``) holds its key fields and grammar, the rules its fields obey, its FLOPs and params,
its torch module and a slot for the graph pattern that recognizes it in a foreign model. ``latency_lut.ops.OpSpec``
asks the registry for all of it; so do the exporters (through :func:`build_op`), whole networks, FLOP counts and
the decomposition of foreign models.

Families, one module each: ``conv`` (conv, skip), ``mbconv`` (ir: FBNet / MBConv / MobileNetV3 / OFA blocks),
``se``, ``shuffle``, ``pool`` (gap, maxpool, avgpool), ``fc`` (fc, logits), ``elementwise`` (add, bn, act, concat).

Adding a kind: a new module in this package that calls ``register(Kind(...))`` with its tokens, ``build``
(torch imported inside it) and costs. Every module here is imported when the registry is (no list to extend), and
nothing else changes. Importing the registry never imports torch.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence
from typing import Any

from latency_lut.blocks.base import ACTS, DTYPES, FIELD_DEFAULTS, REGISTRY, Kind, Token, get_kind, register

_NOT_FAMILIES = {"base", "layers"}  # the registry's machinery and the shared torch pieces
FAMILIES = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _NOT_FAMILIES))
for _family in FAMILIES:
    importlib.import_module(f"{__name__}.{_family}")

_TORCH_NAMES = {"SqueezeExcite": "layers", "ChannelShuffle": "layers", "GlobalAvgPool": "layers",
                "WithConstant": "layers", "activation": "layers", "conv_bn_act": "layers",
                "InvertedResidual": "mbconv"}


def __getattr__(name: str) -> Any:  # torch modules, importable from here without importing torch up front
    if name in _TORCH_NAMES:
        return getattr(importlib.import_module(f"latency_lut.blocks.{_TORCH_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_op(spec: Any, position: int = 0) -> Any:
    """The torch module of one op spec, in eval mode, with weights that depend only on the spec and position.

    ``position`` keeps two identical blocks of one network from getting identical weights, which exporters would
    deduplicate and runtimes could share in cache, unlike a trained network.
    """
    import zlib

    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32((f"{spec.key}@{position}" if position else spec.key).encode()))
        m = get_kind(spec.kind).build(spec)
    _init_batchnorm(m)
    return m.eval()


def build_network(specs: Sequence[Any]) -> Any:  # -> torch.nn.Sequential
    """A whole network: the ops of ``specs`` in order (the same modules the micro-benchmarks measure)."""
    from torch import nn

    return nn.Sequential(*(build_op(s, i) for i, s in enumerate(specs))).eval()


def use_channels_last(module: Any) -> Any:
    """Lower layout-sensitive ops for an NHWC target (TFLite); the computed function does not change."""
    from latency_lut.blocks.layers import ChannelShuffle

    for m in module.modules():
        if isinstance(m, ChannelShuffle):
            m.channels_last = True
    return module


def _init_batchnorm(m: Any) -> None:
    # Non-trivial BN statistics so that no runtime can constant-fold a block into something cheaper than the
    # trained network would be; fixed seed so exports are reproducible.
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(0)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            with torch.no_grad():
                mod.running_mean.copy_(torch.randn(mod.num_features, generator=gen) * 0.1)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=gen) + 0.5)


__all__ = ["ACTS", "DTYPES", "FAMILIES", "FIELD_DEFAULTS", "REGISTRY", "Kind", "Token", "build_network",
           "build_op", "get_kind", "register", "use_channels_last"]
