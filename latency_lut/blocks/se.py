"""Stand-alone squeeze-excite (``se``), as found between the layers of a foreign model."""

from __future__ import annotations

from latency_lut.blocks.base import GATES, Kind, Spec, Token, register, set_field
from latency_lut.blocks.mbconv import SE_ACTS


def _check(s: Spec) -> None:
    if s.hidden < 1:
        raise ValueError("a squeeze-excite op needs its hidden channels (field hidden >= 1)")
    if s.act and s.act not in GATES:
        raise ValueError(f"a squeeze-excite gate is sigmoid or hsigmoid (got {s.act!r})")
    if s.se_act and s.se_act not in SE_ACTS:
        raise ValueError(f"squeeze-excite inner activation must be one of {', '.join(SE_ACTS)}, got {s.se_act!r}")


def _normalize(s: Spec) -> None:
    if s.se_act == "relu":
        set_field(s, "se_act", "")


def _build(s: Spec):  # -> nn.Module
    from latency_lut.blocks.layers import SqueezeExcite

    return SqueezeExcite(s.cin, s.hidden, s.activation, s.se_act or "relu")


SE = register(Kind(
    "se", (Token("hidden", "m", required=True), Token("se_act", "seact", kind="enum", choices=SE_ACTS)), _build,
    doc="se-in{H}x{W}x{C}-m{M}[-seact{act}][-{gate}]: squeeze-excite: pool, 1x1 C->M, inner act (default relu),"
        " 1x1 M->C, gate, multiply.",
    default_act="sigmoid", acts=GATES,
    flops=lambda s: s.h * s.w * s.cin + 2 * s.cin * s.hidden,
    params=lambda s: 2 * s.cin * s.hidden + s.cin + s.hidden,
    normalize=_normalize, check=_check,
    label=lambda s: f"se {s.activation}", fusible=lambda s: True,  # the pool, 1x1s and gate run inside the block
))
