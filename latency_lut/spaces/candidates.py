"""The candidate grammar: one string per searchable choice, decoded here and nowhere else.

In the spirit of timm's block strings, minus what the stage already says (channels, stride, repeats)::

    skip                      FBNet's skip: identity, or a 1x1 projection where the layer changes shape
    zero                      the layer is left out (ProxylessNAS' zero op, OFA's depth): offered only on layers
                              that keep their shape, where it is the identity
    [ir_]k{K}_e{E}[_g{G}]     inverted residual (FBNet keeps the 1x1 expansion conv even for e1)
    ds_k{K}                   MBConv1: depthwise + projection, no expansion conv (MobileNetV2/V3, ProxylessNAS)
    options (any order):  _se{R}       squeeze-excite, R hidden channels per mid channel (rounded to 8)
                          _re _r6 _hs _sw   activation relu / relu6 / hswish / swish (timm's nre, nr6, nhs, nsw
                                       are accepted too); default: the stage's act, else relu
                          _hsig _sig   squeeze-excite gate; default: the stage's se_gate, else sigmoid
                          _noskip      no residual add

FBNet's own names (``k3_e1``, ``k3_e1_g2``, ``k5_e6``, ``skip``) are this grammar's ``ir`` blocks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from latency_lut.blocks.base import make_divisible
from latency_lut.blocks.mbconv import mid_from_expansion
from latency_lut.ops import OpSpec

_ACT_TOKENS = {"re": "relu", "nre": "relu", "relu": "relu", "r6": "relu6", "nr6": "relu6", "relu6": "relu6",
               "hs": "hswish", "nhs": "hswish", "hswish": "hswish", "sw": "swish", "nsw": "swish", "swish": "swish"}
_GATE_TOKENS = {"hsig": "hsigmoid", "sig": "sigmoid"}
SE_DIVISOR = 8
GRAMMAR = "skip, zero, [ir_]k{K}_e{E}[_g{G}] or ds_k{K}, with options _se{R} _re/_r6/_hs/_sw _hsig/_sig _noskip"


class CandidateError(ValueError):
    """A candidate string that is not in the grammar; the message says which part and what is allowed."""


@dataclass(frozen=True)
class Candidate:
    """One decoded candidate. ``op`` is ``ir``, ``skip`` or ``zero``; None fields take the stage's defaults."""

    text: str
    op: str
    kernel: int = 3
    expansion: float = 1
    groups: int = 1
    se: float | None = None
    act: str | None = None
    gate: str | None = None
    expand: bool = True
    residual: bool = True

    def spec(self, cin: int, h: int, w: int, cout: int, stride: int, stage: Any = None) -> OpSpec | None:
        """The op of this candidate at a layer (input cin x h x w, output cout, stride); None for a ``zero`` that
        cannot be the identity there. ``stage`` supplies defaults (act, se, se_gate)."""
        if self.op in ("skip", "zero"):
            if self.op == "zero" and not (stride == 1 and cin == cout):
                return None
            return OpSpec("skip", cin, h, w, cout, stride=stride)
        act = self.act or getattr(stage, "act", None) or "relu"
        se = self.se if self.se is not None else (getattr(stage, "se", 0) or 0)
        gate = self.gate or getattr(stage, "se_gate", None) or "sigmoid"
        mid = mid_from_expansion(cin, self.expansion, self.groups)
        hidden = make_divisible(mid * se, SE_DIVISOR) if se else 0
        return OpSpec("ir", cin, h, w, cout, self.kernel, stride, self.expansion, self.groups, act=act,
                      hidden=hidden, gate=gate if hidden else "", expand=self.expand, skip_add=self.residual)


_HEAD = re.compile(r"^(?:(?P<kind>ir|ds)_)?k(?P<k>\d+)$")
_NUM = r"(\d+(?:\.\d+)?)"


def decode(text: str) -> Candidate:
    """Decode a candidate string; raises :class:`CandidateError` naming the part that is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise CandidateError(f"candidate {text!r} is not a string; use {GRAMMAR}")
    text = text.strip()
    if text in ("skip", "zero"):
        return Candidate(text, text)
    parts = text.split("_")
    head = parts.pop(0)
    if head in ("ir", "ds") and parts:
        head = f"{head}_{parts.pop(0)}"
    m = _HEAD.match(head)
    if not m:
        raise CandidateError(f"candidate {text!r}: {head!r} is not a block; use {GRAMMAR}")
    ds = m["kind"] == "ds"
    f: dict[str, Any] = {"kernel": int(m["k"])}
    for part in parts:
        name, val = _split(part)
        if name in f or (name == "act" and "act" in f):
            raise CandidateError(f"candidate {text!r} repeats {part!r}")
        if name is None:
            raise CandidateError(f"candidate {text!r}: unknown part {part!r}; use {GRAMMAR}")
        f[name] = val
    if ds and ("expansion" in f or "groups" in f):
        raise CandidateError(f"candidate {text!r}: a ds block has no expansion conv, so no _e or _g")
    if not ds and "expansion" not in f:
        raise CandidateError(f"candidate {text!r} needs its expansion, e.g. {head}_e6")
    if f["kernel"] < 1 or f["kernel"] % 2 == 0:
        raise CandidateError(f"candidate {text!r}: kernel {f['kernel']} must be odd")
    if f.get("expansion", 1) <= 0 or f.get("groups", 1) < 1 or not 0 <= f.get("se", 0) <= 1:
        raise CandidateError(f"candidate {text!r}: expansion must be > 0, groups >= 1, se ratio in [0, 1]")
    return Candidate(text, "ir", expand=not ds, **f)


def _split(part: str) -> tuple[str | None, Any]:
    if part in _ACT_TOKENS:
        return "act", _ACT_TOKENS[part]
    if part in _GATE_TOKENS:
        return "gate", _GATE_TOKENS[part]
    if part == "noskip":
        return "residual", False
    for prefix, name in (("se", "se"), ("e", "expansion"), ("g", "groups")):
        m = re.fullmatch(prefix + _NUM, part)
        if m:
            v = float(m[1]) if "." in m[1] else int(m[1])
            if name == "groups" and not isinstance(v, int):
                return None, None
            return name, v
    return None, None
