"""Registry of search spaces: ``get_space("fbnet", resolution=96, width=0.35)``."""

from __future__ import annotations

from collections.abc import Callable

from latency_lut.errors import ArchitectureError
from latency_lut.spaces.base import Architecture, Candidate, Layer, SearchSpace, Stage, make_divisible
from latency_lut.spaces.fbnet import fbnet, fbnet_cifar100

SPACES: dict[str, Callable[..., SearchSpace]] = {"fbnet": fbnet, "fbnet_cifar100": fbnet_cifar100}

MIN_RESOLUTION = 32


def get_space(name: str = "fbnet", resolution: int = 224, width: float = 1.0) -> SearchSpace:
    if name not in SPACES:
        raise ArchitectureError(f"unknown search space {name!r}; known: {', '.join(sorted(SPACES))}")
    if int(resolution) < MIN_RESOLUTION:
        raise ArchitectureError(f"resolution {resolution} is too small; use at least {MIN_RESOLUTION}")
    if not 0 < float(width) <= 4:
        raise ArchitectureError(f"width multiplier {width} is out of range; use a value in (0, 4]")
    return SPACES[name](resolution=int(resolution), width=float(width))


__all__ = [
    "Architecture", "Candidate", "Layer", "SearchSpace", "Stage", "SPACES", "get_space", "fbnet", "make_divisible",
]
