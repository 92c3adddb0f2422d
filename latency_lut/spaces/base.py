"""A layer-wise search space as plain data: stem, stages of searchable layers, head, named architectures."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from latency_lut.errors import ArchitectureError
from latency_lut.ops import OpSpec, conv_out

_CAND_RE = re.compile(r"^k(?P<k>\d+)_e(?P<e>\d+(?:\.\d+)?)(?:_g(?P<g>\d+))?$")


def _shown(text: object, limit: int = 60) -> str:
    """``repr(text)``, cut short: an error quotes what the user typed, not 10,000 characters of it."""
    r = repr(text)
    return r if len(r) <= limit else f"{r[:limit - 20]}... ({len(str(text))} characters)"


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` without dropping more than 10% (MobileNet convention)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


@dataclass(frozen=True)
class Stage:
    cout: int
    n: int
    stride: int


@dataclass(frozen=True)
class Layer:
    """One searchable layer's position: its input shape, output channels and stride (1-based index)."""

    index: int
    stage: int
    cin: int
    h: int
    w: int
    cout: int
    stride: int


@dataclass(frozen=True)
class Candidate:
    """A candidate block name such as ``k5_e6_g2`` or ``skip``."""

    name: str

    def spec(self, layer: Layer) -> OpSpec:
        if self.name == "skip":
            return OpSpec("skip", layer.cin, layer.h, layer.w, layer.cout, stride=layer.stride)
        m = _CAND_RE.match(self.name)
        if not m:
            raise ValueError(f"bad candidate name {self.name!r}")
        e = float(m["e"]) if "." in m["e"] else int(m["e"])
        return OpSpec(
            "ir", layer.cin, layer.h, layer.w, layer.cout,
            kernel=int(m["k"]), stride=layer.stride, expansion=e, groups=int(m["g"] or 1),
        )


@dataclass(frozen=True)
class Architecture:
    """One point of a search space: a candidate index per layer, plus the head width it uses."""

    name: str
    choices: tuple[int, ...]
    head: int | None = None  # head channels before the width multiplier; None = the space's default

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class SearchSpace:
    """A search space at one input resolution and width multiplier."""

    name: str
    stem: int
    stages: tuple[Stage, ...]
    head: int
    candidates: tuple[str, ...]
    num_classes: int = 1000
    resolution: int = 224
    width: float = 1.0
    stem_stride: int = 2
    in_channels: int = 3
    archs: dict[str, tuple[tuple[str, ...], int | None]] = field(default_factory=dict, compare=False, hash=False)

    # ---- geometry ------------------------------------------------------------------------------------------
    def ch(self, c: int) -> int:
        return c if self.width == 1.0 else make_divisible(c * self.width)

    @property
    def num_layers(self) -> int:
        return sum(s.n for s in self.stages)

    @property
    def num_candidates(self) -> int:
        return len(self.candidates)

    @property
    def id(self) -> str:
        """Short name of the space at this resolution and width, as used in file names and LUT headers."""
        w = "" if self.width == 1.0 else f"-w{self.width:g}"
        return f"{self.name}-{self.resolution}{w}"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "resolution": self.resolution, "width": self.width}

    def layers(self) -> list[Layer]:
        h = w = conv_out(self.resolution, 3, self.stem_stride)
        cin = self.ch(self.stem)
        out: list[Layer] = []
        for si, st in enumerate(self.stages, start=1):
            for j in range(st.n):
                s = st.stride if j == 0 else 1
                cout = self.ch(st.cout)
                out.append(Layer(len(out) + 1, si, cin, h, w, cout, s))
                h, w, cin = conv_out(h, 1, s), conv_out(w, 1, s), cout
        return out

    def candidate_spec(self, layer: Layer, candidate: int | str) -> OpSpec:
        name = self.candidates[candidate] if isinstance(candidate, int) else candidate
        return Candidate(name).spec(layer)

    def stem_spec(self) -> OpSpec:
        r = self.resolution
        return OpSpec("conv", self.in_channels, r, r, self.ch(self.stem), 3, self.stem_stride)

    def tail_specs(self, head: int | None = None) -> list[OpSpec]:
        """Head conv, global pool and classifier for a given head width (before the width multiplier)."""
        last = self.layers()[-1]
        hc = self.ch(head or self.head)
        h, w = conv_out(last.h, 1, last.stride), conv_out(last.w, 1, last.stride)
        return [
            OpSpec("conv", last.cout, h, w, hc, 1, 1),
            OpSpec("gap", hc, h, w),
            OpSpec("fc", hc, cout=self.num_classes),
        ]

    # ---- what a LUT must hold ------------------------------------------------------------------------------
    def head_widths(self) -> list[int]:
        return sorted({self.head, *(h for _, h in self.archs.values() if h)})

    def unique_specs(self) -> list[OpSpec]:
        """Every op that some architecture of the space can contain, identities excluded (they cost nothing)."""
        seen: dict[str, OpSpec] = {}
        for spec in [self.stem_spec()] + [self.candidate_spec(l, c) for l in self.layers() for c in self.candidates]:
            if not spec.is_identity:
                seen.setdefault(spec.key, spec)
        for hw in self.head_widths():
            for spec in self.tail_specs(hw):
                seen.setdefault(spec.key, spec)
        return list(seen.values())

    # ---- architectures -------------------------------------------------------------------------------------
    def parse_arch(self, arch: str | Architecture | Sequence[int | str]) -> Architecture:
        """An architecture from a registered name, a string of choices, or a sequence of names or indices.

        Strings of choices separate layers by spaces, commas or '|', and accept candidate names or indices:
        ``"k3_e1 k3_e6 skip ..."`` or ``"0,3,8,..."``.
        """
        if isinstance(arch, Architecture):
            self._check_choices(arch.choices, arch.name)
            return arch
        if isinstance(arch, str):
            key = arch.strip().lower().replace("-", "_")
            if key in self.archs:
                names, head = self.archs[key]
                return Architecture(key, tuple(self._index(n, i) for i, n in enumerate(names, 1)), head)
            tokens = [t for t in re.split(r"[\s,|]+", arch.strip()) if t]
            if len(tokens) == 1:
                known = ", ".join(sorted(self.archs)) or "none"
                raise ArchitectureError(
                    f"unknown architecture {_shown(arch)} for space {self.name}; use a name ({known}) "
                    f"or {self.num_layers} choices from: {' '.join(self.candidates)}"
                )
            name = "custom"
        else:
            tokens, name = list(arch), "custom"
        if len(tokens) != self.num_layers:
            raise ArchitectureError(
                f"architecture has {len(tokens)} choices but space {self.name} has {self.num_layers} layers; "
                f"give one of {' '.join(self.candidates)} (or its index 0-{self.num_candidates - 1}) per layer"
            )
        return Architecture(name, tuple(self._index(t, i) for i, t in enumerate(tokens, 1)))

    def _index(self, token: int | str, layer: int) -> int:
        if isinstance(token, str) and token.strip().lstrip("-").isdigit() and len(token.strip()) <= 9:
            token = int(token)
        if isinstance(token, int) or hasattr(token, "__index__"):
            i = int(token)
            if 0 <= i < self.num_candidates:
                return i
            raise ArchitectureError(
                f"layer {layer}: candidate index {i} is out of range 0-{self.num_candidates - 1}"
            )
        if token in self.candidates:
            return self.candidates.index(token)
        raise ArchitectureError(
            f"layer {layer}: {_shown(token)} is not a candidate of space {self.name}; "
            f"candidates are {' '.join(self.candidates)}"
        )

    def _check_choices(self, choices: Sequence[int], name: str) -> None:
        if len(choices) != self.num_layers:
            raise ArchitectureError(f"architecture {name} has {len(choices)} choices, expected {self.num_layers}")
        for i, c in enumerate(choices, 1):
            self._index(int(c), i)

    def choice_names(self, arch: Architecture) -> list[str]:
        return [self.candidates[c] for c in arch.choices]

    def arch_ops(self, arch: str | Architecture | Sequence[int | str]) -> list[tuple[str, str, OpSpec]]:
        """(label, choice, spec) for every op of one architecture in network order, identities included."""
        a = self.parse_arch(arch)
        rows: list[tuple[str, str, OpSpec]] = [("stem", "conv3x3", self.stem_spec())]
        for layer, c in zip(self.layers(), a.choices):
            rows.append((f"layer{layer.index}", self.candidates[c], self.candidate_spec(layer, c)))
        head, pool, fc = self.tail_specs(a.head)
        rows += [("head", "conv1x1", head), ("pool", "gap", pool), ("fc", "linear", fc)]
        return rows

    def arch_specs(self, arch: str | Architecture | Sequence[int | str]) -> list[OpSpec]:
        """The op specs of one architecture in network order (stem, 22 layers, head, pool, fc)."""
        return [spec for _, _, spec in self.arch_ops(arch)]

    def build_model(self, arch: str | Architecture | Sequence[int | str]):  # -> torch.nn.Sequential
        """The full torch model of one architecture, built from the same block definitions as the LUT."""
        from latency_lut.blocks import build_network

        return build_network(self.arch_specs(arch))

    def flops(self, arch: str | Architecture | Sequence[int | str]) -> int:
        return sum(s.flops for s in self.arch_specs(arch))

    def params(self, arch: str | Architecture | Sequence[int | str]) -> int:
        return sum(s.params for s in self.arch_specs(arch))
