"""Stand-alone squeeze-excite (``se``), as found between the layers of a foreign model."""

from __future__ import annotations

from latency_lut.blocks.base import GATES, Kind, Spec, Token, register


def _check(s: Spec) -> None:
    if s.hidden < 1:
        raise ValueError("a squeeze-excite op needs its hidden channels (field hidden >= 1)")
    if s.act and s.act not in GATES:
        raise ValueError(f"a squeeze-excite gate is sigmoid or hsigmoid (got {s.act!r})")


def _build(s: Spec):  # -> nn.Module
    from latency_lut.blocks.layers import SqueezeExcite

    return SqueezeExcite(s.cin, s.hidden, s.activation)


SE = register(Kind(
    "se", (Token("hidden", "m", required=True),), _build,
    doc="se-in{H}x{W}x{C}-m{M}[-{gate}]: squeeze-excite: pool, 1x1 C->M, ReLU, 1x1 M->C, gate, multiply.",
    default_act="sigmoid", acts=GATES,
    flops=lambda s: s.h * s.w * s.cin + 2 * s.cin * s.hidden,
    params=lambda s: 2 * s.cin * s.hidden + s.cin + s.hidden,
    check=_check,
))
