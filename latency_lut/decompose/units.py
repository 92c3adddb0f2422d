"""Block-level units: chains of primitive ops that a runtime executes as one piece, priced as one LUT entry.

Timed alone, every conv of a block pays its own runtime call and layout reorders, which a whole network does not
pay; a block timed as one unit pays what the network pays. The patterns that read a chain of primitive ops (the
output of the lowering in ``latency_lut.decompose``) live in the block registry, each in its kind's ``pattern``
slot (``ir`` in ``blocks/mbconv.py``, ``shufflev2`` in ``blocks/shuffle.py``); this module asks the registry for
them and turns what a pattern matched into the unit's op spec.
"""

from __future__ import annotations

from typing import Protocol

from latency_lut.blocks import REGISTRY
from latency_lut.ops import OpSpec


class Chain(Protocol):
    """The primitive ops of a model in order, with their data flow."""

    def __len__(self) -> int: ...
    def spec(self, j: int) -> OpSpec: ...
    def next(self, j: int) -> int | None:
        """``j + 1`` when op j's output feeds op j + 1 and nothing else; else None."""
    def adds(self, j: int, start: int, last: int) -> bool:
        """Op j is a plain add of op ``last``'s output and op ``start``'s input (a residual)."""
    def inputs(self, j: int) -> list[str]: ...
    def output(self, j: int) -> str: ...
    def start(self, j: int) -> int:
        """The first channel a slice op takes."""
    def users(self, j: int) -> list[int]: ...


Match = tuple[OpSpec, int]  # the unit's spec, and the index just past its last op


def match_unit(ch: Chain, i: int) -> Match | None:
    """The first block unit of the registry whose pattern matches the chain at op ``i``, or None.

    A pattern says which fields the unit has; a combination its kind does not accept (``OpSpec`` raises) is no
    unit, and the ops stay primitives.
    """
    for kind in REGISTRY.values():
        if kind.pattern is None:
            continue
        found = kind.pattern(ch, i)
        if found is None:
            continue
        fields, end = found
        try:
            return OpSpec(**fields), end
        except ValueError:
            continue
    return None


def fallback_note(spec: OpSpec) -> str:
    """The breakdown note of an op priced from primitives where a runtime may fuse it with its neighbours (the
    kind's ``fusible``)."""
    return "fallback: primitive" if spec.spec_kind.fusible(spec) else ""
