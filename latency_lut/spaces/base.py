"""A layer-wise search space as plain data: stem, stages of searchable layers, head, named architectures.

A :class:`SearchSpace` is one space definition (a YAML file, see ``latency_lut.spaces.schema``) at one input
resolution and width multiplier. Each searchable layer has its own candidate list: its stage's list, less the
``zero`` ops that cannot be the identity there, plus ``zero`` on the layers a per-stage depth choice may leave out.
An architecture picks one candidate per layer, by index into that layer's list (or by name).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from latency_lut.blocks.base import make_divisible
from latency_lut.errors import ArchitectureError
from latency_lut.ops import OpSpec, conv_out
from latency_lut.spaces.candidates import decode

__all__ = ["Architecture", "Layer", "SearchSpace", "Stage", "conv_out", "make_divisible"]


def _shown(text: object, limit: int = 60) -> str:
    """``repr(text)``, cut short: an error quotes what the user typed, not 10,000 characters of it."""
    r = repr(text)
    return r if len(r) <= limit else f"{r[:limit - 20]}... ({len(str(text))} characters)"


@dataclass(frozen=True)
class Stage:
    """A stage: ``n`` layers of ``cout`` channels, the first with ``stride``; options apply to its candidates."""

    cout: int
    n: int
    stride: int
    candidates: tuple[str, ...] = ()
    act: str | None = None  # default activation of its ir candidates
    se: float = 0  # default squeeze-excite ratio of its ir candidates
    se_gate: str | None = None
    depth: tuple[int, ...] | None = None  # per-stage depth choice; layers past min(depth) may be left out


@dataclass(frozen=True)
class Layer:
    """One searchable layer's position: its input shape, output channels, stride (1-based index) and the
    candidates it offers."""

    index: int
    stage: int
    cin: int
    h: int
    w: int
    cout: int
    stride: int
    candidates: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Architecture:
    """One point of a search space: a candidate index per layer, plus the head width it uses."""

    name: str
    choices: tuple[int, ...]
    head: int | None = None  # head channels before the width multiplier; None = the space's default

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class OpDef:
    """A fixed op of the stem or head: a registry kind and its fields; ``out`` may be ``head`` or ``classes``."""

    kind: str
    out: int | str | None = None
    kernel: int = 1
    stride: int = 1
    act: str = ""
    groups: int = 1
    padding: int = -1

    def spec(self, cin: int, h: int, w: int, space: SearchSpace, head: int | None) -> OpSpec:
        if self.out == "classes":
            cout = space.num_classes
        elif self.out == "head":
            cout = space.ch(head or space.head)
        elif self.out is None:
            cout = 0
        else:
            cout = space.ch(int(self.out))
        groups = cin if self.groups == -1 else self.groups  # -1: depthwise
        return OpSpec(self.kind, cin, h, w, cout, self.kernel, self.stride, groups=groups, act=self.act,
                      padding=self.padding)


@dataclass(frozen=True)
class SearchSpace:
    """A search space at one input resolution and width multiplier."""

    name: str
    stem: tuple[OpDef, ...]
    stages: tuple[Stage, ...]
    head_ops: tuple[OpDef, ...]
    head: int = 0  # the default head channels (the ``head`` symbol of head ops), before the width multiplier
    num_classes: int = 1000
    resolution: int = 224
    width: float = 1.0
    divisor: int = 8
    in_channels: int = 3
    archs: dict[str, tuple[tuple[str, ...], int | None]] = field(default_factory=dict, compare=False, hash=False)
    definition: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)
    source: str = field(default="", compare=False)
    builtin: bool = field(default=False, compare=False)

    # ---- geometry ------------------------------------------------------------------------------------------
    def ch(self, c: int) -> int:
        return c if self.width == 1.0 else make_divisible(c * self.width, self.divisor)

    @property
    def num_layers(self) -> int:
        return sum(s.n for s in self.stages)

    @property
    def candidates(self) -> tuple[str, ...]:
        """Every candidate name of the space, in first-seen order (FBNet: its 9 candidates)."""
        seen: dict[str, None] = {}
        for layer in self.layers():
            seen.update(dict.fromkeys(layer.candidates))
        return tuple(seen)

    @property
    def num_candidates(self) -> int:
        """The longest candidate list of any layer (the width of a DNAS table)."""
        return max(len(l.candidates) for l in self.layers())

    @property
    def id(self) -> str:
        """Short name of the space at this resolution and width, as used in file names and LUT headers."""
        w = "" if self.width == 1.0 else f"-w{self.width:g}"
        return f"{self.name}-{self.resolution}{w}"

    @property
    def fingerprint(self) -> str:
        """The definition as canonical JSON: two spaces of one name agree when their fingerprints do."""
        return json.dumps(self.definition, sort_keys=True, separators=(",", ":"))

    def describe(self) -> dict[str, Any]:
        """Everything needed to rebuild this space without its file (embedded in LUT headers and network specs)."""
        return {"name": self.name, "resolution": self.resolution, "width": self.width,
                "definition": self.definition}

    def _chain(self, ops: Sequence[OpDef], cin: int, h: int, w: int, head: int | None) -> list[OpSpec]:
        out = []
        for op in ops:
            spec = op.spec(cin, h, w, self, head)
            if min(spec.out_hw) < 1:
                raise ValueError(f"{spec.key} leaves a zero-size map ({spec.out_hw[0]}x{spec.out_hw[1]})")
            out.append(spec)
            cin = spec.cout
            h, w = spec.out_hw
        return out

    def stem_specs(self) -> list[OpSpec]:
        r = self.resolution
        return self._chain(self.stem, self.in_channels, r, r, None)

    def stem_spec(self) -> OpSpec:
        """The first stem op (the whole stem, for spaces whose stem is one conv)."""
        return self.stem_specs()[0]

    def layers(self) -> list[Layer]:
        """The searchable layers in network order (computed once per space)."""
        return list(self._layers)

    @functools.cached_property
    def _layers(self) -> tuple[Layer, ...]:
        last = self.stem_specs()[-1]
        cin, (h, w) = last.cout, last.out_hw
        out: list[Layer] = []
        for si, st in enumerate(self.stages, start=1):
            optional_from = min(st.depth) if st.depth else st.n
            for j in range(st.n):
                s = st.stride if j == 0 else 1
                cout = self.ch(st.cout)
                identity = s == 1 and cin == cout
                names = [c for c in st.candidates if c != "zero" or identity]
                if j >= optional_from and "zero" not in names:
                    names.append("zero")
                out.append(Layer(len(out) + 1, si, cin, h, w, cout, s, tuple(names)))
                h, w, cin = conv_out(h, 1, s), conv_out(w, 1, s), cout
        return tuple(out)

    def candidate_spec(self, layer: Layer, candidate: int | str) -> OpSpec:
        name = layer.candidates[candidate] if isinstance(candidate, int) else candidate
        memo = self._candidate_specs
        spec = memo.get((layer, name))
        if spec is None:  # an op spec checks its fields as it is made; sampling archs asks for the same ones
            spec = decode(name).spec(layer.cin, layer.h, layer.w, layer.cout, layer.stride,
                                     self.stages[layer.stage - 1])
            if spec is None:
                raise ArchitectureError(f"layer {layer.index}: 'zero' needs a layer that keeps its shape")
            memo[(layer, name)] = spec
        return spec

    @functools.cached_property
    def _candidate_specs(self) -> dict[tuple[Layer, str], OpSpec]:
        return {}

    def tail_specs(self, head: int | None = None) -> list[OpSpec]:
        """The head ops (e.g. head conv, global pool, classifier) for a head width (before the width multiplier)."""
        last = self.layers()[-1]
        h, w = conv_out(last.h, 1, last.stride), conv_out(last.w, 1, last.stride)
        return self._chain(self.head_ops, last.cout, h, w, head)

    # ---- what a LUT must hold ------------------------------------------------------------------------------
    def head_widths(self) -> list[int]:
        return sorted({self.head, *(h for _, h in self.archs.values() if h)})

    def unique_specs(self) -> list[OpSpec]:
        """Every op that some architecture of the space can contain, identities excluded (they cost nothing)."""
        seen: dict[str, OpSpec] = {}
        cands = [self.candidate_spec(l, c) for l in self.layers() for c in range(len(l.candidates))]
        for spec in self.stem_specs() + cands:
            if not spec.is_identity:
                seen.setdefault(spec.key, spec)
        for hw in self.head_widths():
            for spec in self.tail_specs(hw):
                seen.setdefault(spec.key, spec)
        return list(seen.values())

    # ---- architectures -------------------------------------------------------------------------------------
    def parse_arch(self, arch: str | Architecture | Sequence[int | str]) -> Architecture:
        """An architecture from a registered name, a string of choices, or a sequence of names or indices.

        Strings of choices separate layers by spaces, commas or '|', and accept candidate names or indices into
        each layer's list: ``"k3_e1 k3_e6 skip ..."`` or ``"0,3,8,..."``.
        """
        layers = self.layers()
        if isinstance(arch, Architecture):
            self._check_choices(arch.choices, arch.name, layers)
            return arch
        if isinstance(arch, str):
            key = arch.strip().lower().replace("-", "_")
            if key in self.archs:
                names, head = self.archs[key]
                if len(names) != len(layers):
                    raise ArchitectureError(f"architecture {key} has {len(names)} choices but space {self.name} has "
                                            f"{len(layers)} layers")
                return Architecture(key, tuple(self._index(n, l) for n, l in zip(names, layers)), head)
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
                f"give one of {' '.join(self.candidates)} (or its index in the layer's list) per layer"
            )
        return Architecture(name, tuple(self._index(t, l) for t, l in zip(tokens, layers)))

    def _index(self, token: int | str, layer: Layer) -> int:
        n = len(layer.candidates)
        if isinstance(token, str) and token.strip().lstrip("-").isdigit() and len(token.strip()) <= 9:
            token = int(token)
        if isinstance(token, int) or hasattr(token, "__index__"):
            i = int(token)
            if 0 <= i < n:
                return i
            raise ArchitectureError(f"layer {layer.index}: candidate index {i} is out of range 0-{n - 1}")
        if token in layer.candidates:
            return layer.candidates.index(token)
        raise ArchitectureError(
            f"layer {layer.index}: {_shown(token)} is not a candidate of space {self.name}; "
            f"candidates are {' '.join(layer.candidates)}"
        )

    def _check_choices(self, choices: Sequence[int], name: str, layers: list[Layer]) -> None:
        if len(choices) != self.num_layers:
            raise ArchitectureError(f"architecture {name} has {len(choices)} choices, expected {self.num_layers}")
        for c, layer in zip(choices, layers):
            self._index(int(c), layer)

    def choice_names(self, arch: Architecture) -> list[str]:
        return [l.candidates[c] for l, c in zip(self.layers(), arch.choices)]

    def arch_ops(self, arch: str | Architecture | Sequence[int | str]) -> list[tuple[str, str, OpSpec]]:
        """(label, choice, spec) for every op of one architecture in network order, identities included."""
        a = self.parse_arch(arch)
        stem = self.stem_specs()
        rows: list[tuple[str, str, OpSpec]] = [
            ("stem" if len(stem) == 1 else f"stem{i}", _op_label(s), s) for i, s in enumerate(stem, 1)]
        for layer, c in zip(self.layers(), a.choices):
            rows.append((f"layer{layer.index}", layer.candidates[c], self.candidate_spec(layer, c)))
        labels = _tail_labels(self.head_ops)
        rows += [(label, _op_label(s), s) for label, s in zip(labels, self.tail_specs(a.head))]
        return rows

    def arch_specs(self, arch: str | Architecture | Sequence[int | str]) -> list[OpSpec]:
        """The op specs of one architecture in network order (stem, layers, head)."""
        return [spec for _, _, spec in self.arch_ops(arch)]

    def build_model(self, arch: str | Architecture | Sequence[int | str]):  # -> torch.nn.Sequential
        """The full torch model of one architecture, built from the same block definitions as the LUT."""
        from latency_lut.blocks import build_network

        return build_network(self.arch_specs(arch))

    def flops(self, arch: str | Architecture | Sequence[int | str]) -> int:
        return sum(s.flops for s in self.arch_specs(arch))

    def params(self, arch: str | Architecture | Sequence[int | str]) -> int:
        return sum(s.params for s in self.arch_specs(arch))


def _op_label(s: OpSpec) -> str:
    if s.kind == "conv":
        return f"conv{s.kernel}x{s.kernel}"
    return {"gap": "gap", "fc": "linear", "logits": "pool+linear"}.get(s.kind, s.kind)


def _tail_labels(ops: Sequence[OpDef]) -> list[str]:
    """FBNet's labels (head, pool, fc) for the usual head; numbered ones where a kind repeats."""
    names = {"conv": "head", "gap": "pool", "fc": "fc", "logits": "fc"}
    base = [names.get(op.kind, op.kind) for op in ops]
    out = []
    for i, b in enumerate(base):
        n = base.count(b)
        out.append(b if n == 1 else f"{b}{base[:i + 1].count(b)}")
    return out
