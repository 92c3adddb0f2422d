"""The FBNet search space (Wu et al., CVPR 2019, Table 1) and FBNet-A/B/C."""

from __future__ import annotations

from latency_lut.spaces.base import SearchSpace, Stage

CANDIDATES = ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")

STAGES = (
    Stage(16, 1, 1),
    Stage(24, 4, 2),
    Stage(32, 4, 2),
    Stage(64, 4, 2),
    Stage(112, 4, 1),
    Stage(184, 4, 2),
    Stage(352, 1, 1),
)

# Choices per layer, grouped by stage, and the head width (None = the space's 1984).
ARCHS: dict[str, tuple[tuple[str, ...], int | None]] = {
    "fbnet_a": (
        tuple(
            "skip | k3_e3 k3_e1 skip skip | k5_e6 k3_e3 k5_e1 k3_e3 | k5_e6 k5_e3 k5_e1_g2 k5_e6 | "
            "k3_e6 k5_e1_g2 k5_e3 k3_e1_g2 | k5_e6 k5_e6 k5_e3 k5_e6 | k5_e6".replace("|", "").split()
        ),
        1504,
    ),
    "fbnet_b": (
        tuple(
            "k3_e1 | k3_e6 k5_e1 k3_e1 k3_e1 | k5_e6 k5_e3 k3_e6 k5_e6 | k5_e6 k5_e6 skip k5_e3 | "
            "k5_e6 k3_e1 k5_e1 k5_e3 | k5_e6 k5_e1 k5_e6 k5_e6 | k3_e6".replace("|", "").split()
        ),
        None,
    ),
    "fbnet_c": (
        tuple(
            "k3_e1 | k3_e6 skip k3_e1 k3_e1 | k5_e6 k5_e3 k5_e6 k3_e6 | k5_e6 k5_e3 k5_e6 k5_e6 | "
            "k5_e6 k5_e6 k5_e6 k5_e3 | k5_e6 k5_e6 k5_e6 k5_e6 | k3_e6".replace("|", "").split()
        ),
        None,
    ),
}


def fbnet(resolution: int = 224, width: float = 1.0) -> SearchSpace:
    """FBNet at any input resolution and width multiplier (channels rounded to multiples of 8)."""
    return SearchSpace(
        name="fbnet", stem=16, stages=STAGES, head=1984, candidates=CANDIDATES,
        resolution=resolution, width=width, archs=dict(ARCHS),
    )
