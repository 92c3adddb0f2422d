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


# HW-NAS-Bench's CIFAR-100 variant of the FBNet space (Li et al., ICLR 2021): 32x32 input, the stem and the second
# stage at stride 1 (so the last stage runs at 4x4), the 1504-wide head and 100 classes.
CIFAR_STAGES = tuple(Stage(s.cout, s.n, 1 if i == 1 else s.stride) for i, s in enumerate(STAGES))


def fbnet_cifar100(resolution: int = 32, width: float = 1.0) -> SearchSpace:
    """FBNet as HW-NAS-Bench laid it out for CIFAR-100 (its ``_32`` tables)."""
    return SearchSpace(
        name="fbnet_cifar100", stem=16, stages=CIFAR_STAGES, head=1504, candidates=CANDIDATES, num_classes=100,
        resolution=resolution, width=width, stem_stride=1,
    )
