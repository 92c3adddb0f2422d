"""The FBNet search space (Wu et al., CVPR 2019, Table 1) and FBNet-A/B/C, defined in ``builtin/fbnet.yaml``."""

from __future__ import annotations

from latency_lut.spaces import get_space, load_definition
from latency_lut.spaces.base import SearchSpace

_DEF = load_definition("fbnet")
CANDIDATES: tuple[str, ...] = tuple(_DEF["candidate_sets"]["fbnet"])
# Choices per layer and the head width (None = the space's 1984).
ARCHS: dict[str, tuple[tuple[str, ...], int | None]] = get_space("fbnet").archs


def fbnet(resolution: int = 224, width: float = 1.0) -> SearchSpace:
    """FBNet at any input resolution and width multiplier (channels rounded to multiples of 8)."""
    return get_space("fbnet", resolution, width)
