"""ShuffleNet's channel shuffle (``shuffle``)."""

from __future__ import annotations

from latency_lut.blocks.base import Kind, Spec, Token, register


def _build(s: Spec):  # -> nn.Module
    from latency_lut.blocks.layers import ChannelShuffle

    return ChannelShuffle(s.groups)


def _check(s: Spec) -> None:
    if s.cin % s.groups:
        raise ValueError(f"channels {s.cin} are not divisible by shuffle groups {s.groups}")


SHUFFLE = register(Kind(
    "shuffle", (Token("groups", "g", required=True),), _build,
    doc="shuffle-in{H}x{W}x{C}-g{G}: channel shuffle with G groups.", check=_check,
))
