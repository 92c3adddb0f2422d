"""The graph both front ends produce (:class:`Node`), the priced unit (:class:`DecomposedOp`), and the errors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from latency_lut.errors import LatencyLutError
from latency_lut.ops import OpSpec


class UnsupportedLayerError(LatencyLutError):
    """A model contains layers that have no LUT op kind; the message names them."""

    def __init__(self, message: str, layers: list[str] | None = None) -> None:
        super().__init__(message)
        self.layers = list(layers or [])


class ModelError(LatencyLutError):
    """A model that cannot be traced, loaded or shape-inferred."""


class TraceError(ModelError):
    """torch.fx cannot trace a model (control flow on tensors, ...); the ONNX front end is the fallback."""


@dataclass
class Node:
    """One layer of a model: a normalized op, its tensor inputs and output, their shapes (batch 1)."""

    name: str
    op: str
    inputs: list[str]
    output: str
    in_shapes: list[tuple[int, ...]]
    out_shape: tuple[int, ...]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DecomposedOp:
    """One priced unit of a model: where it comes from (label), a short description, and its LUT op."""

    label: str
    desc: str
    spec: OpSpec
    members: tuple[str, ...] = ()
    note: str = ""  # "fallback: primitive" for an op that a block pattern did not absorb




def common_label(labels: Sequence[str]) -> str:
    """The dotted prefix that a group of layer names share (the block they sit in)."""
    parts = [lab.replace("/", ".").strip(".").split(".") for lab in labels]
    common: list[str] = []
    for tokens in zip(*parts):
        if len(set(tokens)) != 1:
            break
        common.append(tokens[0])
    return ".".join(common) or labels[0]
