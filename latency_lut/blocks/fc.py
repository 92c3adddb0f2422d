"""Classifiers: ``fc`` (linear layer + activation) and ``logits`` (global average pool + linear, one unit)."""

from __future__ import annotations

from latency_lut.blocks.base import ACTS, OUT, Kind, Spec, register


def _build_fc(s: Spec):  # -> nn.Module
    from torch import nn

    from latency_lut.blocks.layers import activation

    m = nn.Linear(s.cin, s.cout)
    return nn.Sequential(m, activation(s.act)) if s.act else m


FC = register(Kind(
    "fc", (OUT,), _build_fc,
    doc="fc-in{C}-out{C'}[-{act}]: linear layer (+ act, default none).",
    spatial=False, default_act="linear", acts=ACTS, label=lambda s: "linear" + (f" {s.act}" if s.act else ""),
    flops=lambda s: s.cin * s.cout, params=lambda s: s.cin * s.cout + s.cout,
    out_hw=lambda s: (1, 1), flat_out=True,
))


def _build_logits(s: Spec):  # -> nn.Module
    from torch import nn

    from latency_lut.blocks.layers import GlobalAvgPool

    return nn.Sequential(GlobalAvgPool(), nn.Linear(s.cin, s.cout))


LOGITS = register(Kind(
    "logits", (OUT,), _build_logits,
    doc="logits-in{H}x{W}x{C}-out{N}: global average pool + linear classifier, measured as one unit (the "
        "ProxylessNAS table's 'Logits' entry).",
    flops=lambda s: s.h * s.w * s.cin + s.cin * s.cout, params=lambda s: s.cin * s.cout + s.cout,
    out_hw=lambda s: (1, 1), flat_out=True,
))
