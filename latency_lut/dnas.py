"""A LUT inside a differentiable architecture search (FBNet, Wu et al. 2019; ProxylessNAS, Cai et al. 2019).

The LUT of a search space becomes a ``[layers, candidates]`` latency tensor plus a fixed cost (stem, head, pool,
classifier). The expected latency of architecture weights ``m`` (softmax or Gumbel-softmax of the architecture
parameters theta) is ``sum_l sum_i m[l, i] * T[l, i] + fixed``: linear in ``m``, so its gradient is ``T`` itself.

    from latency_lut import load
    from latency_lut.dnas import LatencyTable, GumbelSchedule, gumbel_softmax, fbnet_loss

    lat = LatencyTable.from_lut(load("profiles/local-onnxruntime-224.json"))
    theta = torch.zeros(lat.shape, requires_grad=True)
    m = gumbel_softmax(theta, GumbelSchedule().tau(epoch))
    loss = fbnet_loss(ce, lat.expected(m))

Identity skips and zero ops are zeros that are known structurally (``identity`` mask), not measured. In spaces
whose layers offer candidate lists of different lengths the table is as wide as the longest list and ``mask``
marks the real entries: use :meth:`LatencyTable.logits` (or :meth:`LatencyTable.sample`) so that masked entries get
no probability, and :meth:`LatencyTable.derive` never picks one. Missing ops raise
:class:`UnknownOpError` listing them. The searched architecture's head is the space's default width: FBNet-A's
1504-wide head is a property of that one published model, not a searchable choice, so it is not in the fixed cost.
This module imports torch; ``import latency_lut`` does not import it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from latency_lut.errors import ArchitectureError, LatencyLutError
from latency_lut.lut import LUT
from latency_lut.predict import ArchTable, arch_table
from latency_lut.spaces import SearchSpace

FBNET_ALPHA = 0.2
FBNET_BETA = 0.6
TAU0 = 5.0
TAU_DECAY = 0.045


class LatencyLossError(LatencyLutError):
    """A latency loss that is undefined for its inputs (e.g. the log of a latency <= 1 unit)."""


@dataclass
class LatencyTable:
    """The latency of every candidate at every layer (ms), on any torch device and float dtype."""

    space: SearchSpace
    table: torch.Tensor  # float64 [layers, candidates], CPU master copy
    fixed: float  # stem + head + pool + classifier, ms
    identity: torch.Tensor  # bool [layers, candidates]
    mask: torch.Tensor | None = None  # bool [layers, candidates]: True where the layer has that candidate
    _cache: dict[tuple[Any, Any], torch.Tensor] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.mask is None:
            self.mask = torch.ones(self.table.shape, dtype=torch.bool)
        self.ragged = not bool(self.mask.all())

    @classmethod
    def from_lut(cls, lut: LUT, space: SearchSpace | None = None) -> LatencyTable:
        """Compile a LUT; ``space`` (default: the LUT's own) must be the space and resolution it was built for."""
        return cls.from_arch_table(arch_table(lut, space))

    @classmethod
    def from_arch_table(cls, t: ArchTable) -> LatencyTable:
        return cls(t.space, torch.from_numpy(t.table.copy()), float(t.fixed), torch.from_numpy(t.identity.copy()),
                   torch.from_numpy(t.valid.copy()))

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.table.shape)  # type: ignore[return-value]

    def to(self, device: Any = None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The table on ``device`` in ``dtype`` (cached, so a training loop does not copy it every step)."""
        key = (torch.device(device or "cpu"), dtype or torch.float32)
        t = self._cache.get(key)
        if t is None:
            t = self._cache[key] = self.table.to(device=key[0], dtype=key[1])
        return t

    def expected(self, weights: torch.Tensor) -> torch.Tensor:
        """Expected latency (ms) of architecture weights ``[..., layers, candidates]``, differentiable.

        ``weights`` are per-layer distributions (softmax or Gumbel-softmax outputs); leading batch dimensions are
        kept. The result follows the device and dtype of ``weights``.
        """
        return self.per_layer(weights).sum(dim=-1) + self.fixed

    def per_layer(self, weights: torch.Tensor) -> torch.Tensor:
        """Expected latency of each layer ``[..., layers]`` (ms), without the fixed cost.

        Where layers have candidate lists of different lengths, weight on a masked entry is not a free choice:
        each layer's weights are renormalized over its real candidates, so mass moved to a masked entry costs
        the layer's average, never less.
        """
        self._check(weights)
        t = self.to(weights.device, weights.dtype)
        if self.ragged:
            m = self._mask_on(weights.device).to(weights.dtype)
            w = weights * m
            return (w * t).sum(dim=-1) / w.sum(dim=-1).clamp_min(torch.finfo(weights.dtype).tiny)
        return (weights * t).sum(dim=-1)

    def _mask_on(self, device: Any) -> torch.Tensor:
        key = (torch.device(device or "cpu"), torch.bool)
        m = self._cache.get(key)
        if m is None:
            m = self._cache[key] = self.mask.to(device=key[0])
        return m

    def logits(self, theta: torch.Tensor) -> torch.Tensor:
        """Architecture parameters with masked entries at -inf, for softmax or Gumbel-softmax."""
        self._check(theta)
        if not self.ragged:
            return theta
        return theta.masked_fill(~self._mask_on(theta.device), float("-inf"))

    def sample(self, theta: torch.Tensor, tau: float, *, hard: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Gumbel-softmax weights over each layer's real candidates (masked entries get exactly 0)."""
        return gumbel_softmax(self.logits(theta), tau, hard=hard, generator=generator)

    def latency_of(self, choices: torch.Tensor) -> torch.Tensor:
        """Latency (ms) of discrete architectures: integer tensor ``[..., layers]`` of candidate indices."""
        if choices.dtype.is_floating_point or choices.shape[-1:] != self.table.shape[:1]:
            raise ArchitectureError(
                f"architecture tensor has shape {tuple(choices.shape)} and dtype {choices.dtype}; expected an integer "
                f"tensor [..., {self.table.shape[0]}] of candidate indices"
            )
        idx = choices.long()
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.shape[1]):
            raise ArchitectureError(f"architecture tensor has candidate indices outside 0-{self.shape[1] - 1}")
        if self.ragged and idx.numel():
            counts = self._mask_on(choices.device).sum(-1)
            if bool((idx >= counts).any()):
                layer = int((idx >= counts).reshape(-1, self.shape[0]).any(0).nonzero()[0]) + 1
                raise ArchitectureError(f"architecture tensor picks a candidate layer {layer} does not offer (it has "
                                        f"{int(counts[layer - 1])})")
        t = self.to(choices.device, torch.float64)
        return t[torch.arange(self.shape[0], device=choices.device), idx].sum(-1) + self.fixed

    def derive(self, theta: torch.Tensor) -> list[int]:
        """The architecture a search ends with: the most likely candidate of each layer of ``theta``."""
        self._check(theta)
        if theta.dim() != 2:
            raise ArchitectureError(f"derive needs one [{self.shape[0]}, {self.shape[1]}] theta, got "
                                    f"{tuple(theta.shape)}")
        return [int(i) for i in self.logits(theta.detach()).argmax(dim=-1).tolist()]

    def _check(self, w: torch.Tensor) -> None:
        if not isinstance(w, torch.Tensor):
            raise ArchitectureError(f"architecture weights must be a torch tensor, got {type(w).__name__}")
        if w.dim() < 2 or tuple(w.shape[-2:]) != self.shape:
            raise ArchitectureError(
                f"architecture tensor has shape {tuple(w.shape)}; space {self.space.id} needs [..., {self.shape[0]}, "
                f"{self.shape[1]}] ({self.shape[0]} layers x {self.shape[1]} candidates: "
                f"{' '.join(self.space.candidates)})"
            )
        if not w.dtype.is_floating_point:
            raise ArchitectureError(f"architecture weights must be floating point, got {w.dtype}")


def expected_latency(table: LatencyTable, weights: torch.Tensor) -> torch.Tensor:
    """Functional form of :meth:`LatencyTable.expected`."""
    return table.expected(weights)


# ---- losses --------------------------------------------------------------------------------------------------
def _log_latency(latency: torch.Tensor, unit: float, what: str) -> torch.Tensor:
    scaled = latency / unit
    # A log of a latency <= 1 unit is <= 0 and its fractional power is NaN or 0: fail loudly instead.
    if bool((scaled <= 1).any()):
        raise LatencyLossError(
            f"{what} needs latency > 1 unit, got {float(latency.detach().min()):.4g} ms with unit={unit} ms; pass "
            "unit=0.001 to work in microseconds for sub-millisecond tables"
        )
    return torch.log(scaled)


def fbnet_loss(ce: torch.Tensor, latency: torch.Tensor, alpha: float = FBNET_ALPHA, beta: float = FBNET_BETA,
               unit: float = 1.0) -> torch.Tensor:
    """FBNet's loss ``CE * alpha * log(LAT)^beta`` (FACTS §3), with LAT in units of ``unit`` ms (default ms).

    Alpha scales the whole loss (an Adam optimizer is invariant to it); beta sets how strongly latency counts.
    """
    return ce * alpha * _log_latency(latency, unit, "fbnet_loss") ** beta


def proxyless_loss(ce: torch.Tensor, latency: torch.Tensor, ref: float, alpha: float = FBNET_ALPHA,
                   beta: float = FBNET_BETA, unit: float = 1.0) -> torch.Tensor:
    """ProxylessNAS' multiplicative variant ``alpha * CE * (log LAT / log ref)^beta`` (``ref`` in ms)."""
    if ref / unit <= 1:
        raise LatencyLossError(f"proxyless_loss needs ref > 1 unit, got ref={ref} ms with unit={unit} ms")
    return alpha * ce * (_log_latency(latency, unit, "proxyless_loss") / math.log(ref / unit)) ** beta


def proxyless_additive_loss(ce: torch.Tensor, latency: torch.Tensor, ref: float, lam: float = 0.1) -> torch.Tensor:
    """ProxylessNAS' additive variant ``CE + lambda * (LAT - ref) / ref`` (``ref`` in ms, > 0)."""
    if not ref > 0:
        raise LatencyLossError(f"proxyless_additive_loss needs a reference latency ref > 0 ms, got {ref}")
    return ce + lam * (latency - ref) / ref


# ---- Gumbel-softmax ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GumbelSchedule:
    """FBNet's temperature: ``tau0 * exp(-decay * epoch)``, tau0 = 5.0, decay = 0.045 per epoch."""

    tau0: float = TAU0
    decay: float = TAU_DECAY

    def tau(self, epoch: float) -> float:
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        return self.tau0 * math.exp(-self.decay * epoch)


def temperature(epoch: float, tau0: float = TAU0, decay: float = TAU_DECAY) -> float:
    return GumbelSchedule(tau0, decay).tau(epoch)


def gumbel_softmax(theta: torch.Tensor, tau: float, *, hard: bool = False,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Gumbel-softmax weights ``softmax((theta + g) / tau)`` over the last dimension, ``g = -log(-log(u))``.

    ``hard`` returns one-hot samples with the soft sample's gradient (straight-through). A ``generator`` (on
    theta's device) makes sampling reproducible.
    """
    if not tau > 0:
        raise ValueError(f"Gumbel-softmax temperature must be > 0, got {tau}")
    u = torch.rand(theta.shape, generator=generator, device=theta.device, dtype=theta.dtype)
    # Clamp away 0 and 1: either end makes -log(-log(u)) infinite.
    tiny = torch.finfo(theta.dtype).tiny
    g = -torch.log(-torch.log(u.clamp(tiny, 1.0 - torch.finfo(theta.dtype).eps)))
    soft = torch.softmax((theta + g) / tau, dim=-1)
    if not hard:
        return soft
    one_hot = torch.zeros_like(soft).scatter_(-1, soft.argmax(dim=-1, keepdim=True), 1.0)
    return one_hot - soft.detach() + soft
