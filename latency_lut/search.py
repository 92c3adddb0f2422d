"""The search loop, closed: DNAS on a LUT, then train, export and measure what it finds.

For each latency weight, a differentiable search (FBNet: Gumbel-softmax over every candidate of every layer,
weights on one split with cross-entropy, architecture parameters theta on another with CE and the LUT's expected
latency) derives an architecture. Each derived architecture is then

- trained from scratch on the whole training set and scored once on the held-out test set;
- exported for the LUT's runtime and measured end to end on the LUT's device with the LUT's protocol, in
  interleaved rounds, through the same machinery as ``validate`` (every round goes into the store);
- compared with the LUT's prediction.

The data is scikit-learn's handwritten digits (1797 8x8 images, shipped with scikit-learn: nothing to download),
upsampled to the space's resolution. The model that is trained is ``space.build_model(arch)`` itself, the network
the LUT prices and the measurement runs, classifier included (its outputs beyond the 10 digits are simply never
the target), so accuracy, prediction and measurement all describe one network.

Only the space's generic API is used (layers and their candidates, op specs, ``build_model``, ``parse_arch``), so
the loop runs on any space a LUT was built for. This module imports torch; ``import latency_lut`` does not.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from latency_lut.blocks import build_op
from latency_lut.dnas import GumbelSchedule, LatencyTable, fbnet_loss, gumbel_softmax, proxyless_additive_loss
from latency_lut.errors import LatencyLutError
from latency_lut.lut import LUT, check_output_path
from latency_lut.networks import NetworkSpec
from latency_lut.predict import predict
from latency_lut.spaces import Architecture, SearchSpace
from latency_lut.validate import Progress, check_device, measure_models

LOSSES = ("fbnet", "additive")
MODES = ("soft", "path")
NUM_CLASSES = 10  # digits


class SearchError(LatencyLutError):
    """A search that cannot run as asked (bad settings, a LUT for another space, missing scikit-learn)."""


@dataclass(frozen=True)
class SearchConfig:
    """Every knob of one closed-loop run. The defaults fit the whole loop in minutes on 2 CPU cores.

    Search (per latency weight, after a weight-only warm-up shared by all weights): ``warmup_epochs`` and
    ``search_epochs`` of ``steps`` batches each; Adam on the weights, Adam on theta (FBNet: lr 0.01, wd 5e-4; a
    higher lr here because the search is hundreds of steps, not 90 ImageNet epochs). Training of each derived
    architecture: SGD with Nesterov momentum under a one-cycle learning-rate schedule, label smoothing and
    random affine augmentation (rotation, scale, shift), ``train_epochs`` passes over the training set.
    """

    weights: tuple[float, ...] = (0.0, 1.0, 4.0)
    loss: str = "fbnet"  # fbnet: CE * alpha * log(LAT)^weight; additive: CE + weight * (LAT - ref) / ref
    mode: str = "soft"  # soft: FBNet's weighted sum of all candidates; path: only the sampled one runs
    warmup_epochs: int = 3
    search_epochs: int = 4
    steps: int = 10
    batch: int = 32
    lr: float = 3e-3
    theta_lr: float = 0.05
    train_epochs: int = 15
    train_batch: int = 64
    train_lr: float = 0.1
    augment: bool = True
    rounds: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.weights:
            raise SearchError("give at least one latency weight")
        if any(not math.isfinite(w) or w < 0 for w in self.weights):
            raise SearchError(f"latency weights must be finite and >= 0, got {list(self.weights)}")
        if len(set(self.weights)) != len(self.weights):
            raise SearchError(f"latency weights repeat: {list(self.weights)}")
        if self.loss not in LOSSES:
            raise SearchError(f"unknown loss {self.loss!r}; use one of {', '.join(LOSSES)}")
        if self.mode not in MODES:
            raise SearchError(f"unknown search mode {self.mode!r}; use one of {', '.join(MODES)}")
        for name in ("steps", "batch", "train_epochs", "train_batch", "rounds"):
            if getattr(self, name) < 1:
                raise SearchError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("warmup_epochs", "search_epochs"):
            if getattr(self, name) < 0:
                raise SearchError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "theta_lr", "train_lr"):
            if not getattr(self, name) > 0:
                raise SearchError(f"{name} must be > 0, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "weights": list(self.weights)}


# ---- data ----------------------------------------------------------------------------------------------------
Split = tuple[torch.Tensor, torch.Tensor]


def digits(resolution: int, in_channels: int = 3, seed: int = 0) -> dict[str, Split]:
    """scikit-learn's digits at ``resolution`` px (bilinear), normalized, repeated over ``in_channels``.

    Splits (seeded, stratified by nothing but chance): ``weights`` 60% and ``theta`` 20% (FBNet trains the weights
    on 80% of the training data and theta on the other 20%), ``test`` 20%, touched only to score a result;
    ``train`` = weights + theta, on which each derived architecture is trained from scratch.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SearchError("the search trains on scikit-learn's digits: pip install 'fbnet-lut[examples]'") from None
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    x = ((x - 0.3) / 0.4).expand(-1, in_channels, -1, -1).contiguous(memory_format=torch.channels_last)
    y = torch.tensor(d.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    cut1, cut2 = int(0.6 * len(y)), int(0.8 * len(y))
    parts = {"weights": perm[:cut1], "theta": perm[cut1:cut2], "train": perm[:cut2], "test": perm[cut2:]}
    return {k: (x[i], y[i]) for k, i in parts.items()}


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random affine per image: rotation +-12 degrees, scale +-10%, shift +-6% of the side (digits stay legible)."""
    n = x.shape[0]
    u = torch.rand(n, 4, generator=generator) * 2 - 1
    angle, scale, shift = u[:, 0] * 0.21, 1 + u[:, 1] * 0.1, u[:, 2:] * 0.12
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    affine = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(affine, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    return out.contiguous(memory_format=torch.channels_last)


# ---- the supernet --------------------------------------------------------------------------------------------
def _split_fixed(space: SearchSpace) -> tuple[list[tuple[int, Any]], list[tuple[int, Any]]]:
    """The fixed ops before and after the searchable layers, with their network positions (stem, head, ...)."""
    rows = space.arch_ops(space.parse_arch([0] * space.num_layers))
    searchable = {f"layer{layer.index}" for layer in space.layers()}
    idx = [i for i, (label, _, _) in enumerate(rows) if label in searchable]
    first, last = idx[0], idx[-1]
    return ([(i, rows[i][2]) for i in range(first)], [(i, rows[i][2]) for i in range(last + 1, len(rows))])


class MixedLayer(nn.Module):
    """All candidates of one layer, combined with architecture weights m: sum_i m_i * op_i(x)."""

    def __init__(self, space: SearchSpace, layer: Any, position: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList(build_op(space.candidate_spec(layer, c), position).train()
                                 for c in layer.candidates)

    def forward(self, x: torch.Tensor, m: torch.Tensor, single_path: bool = False) -> torch.Tensor:
        if single_path:
            # m is a straight-through one-hot sample: only the sampled candidate runs, and theta still gets its
            # gradient through m[k], whose value is 1.
            k = int(m.detach().argmax())
            return m[k] * self.ops[k](x)
        # Entries past this layer's own candidates are masked (weight 0) in a table padded to the longest list.
        return sum(w * op(x) for w, op in zip(m, self.ops))


class SuperNet(nn.Module):
    """The space's fixed ops around one :class:`MixedLayer` per searchable layer (the same blocks as the LUT)."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        before, after = _split_fixed(space)
        self.before = nn.Sequential(*(_trainable(build_op(s, i)) for i, s in before))
        self.layers = nn.ModuleList(MixedLayer(space, layer, len(before) + j)
                                    for j, layer in enumerate(space.layers()))
        self.after = nn.Sequential(*(_trainable(build_op(s, i)) for i, s in after))

    def forward(self, x: torch.Tensor, m: torch.Tensor, single_path: bool = False) -> torch.Tensor:
        x = self.before(x)
        for layer, ml in zip(self.layers, m):
            x = layer(x, ml, single_path)
        return self.after(x)


def _trainable(m: nn.Module) -> nn.Module:
    """A module of the block library made ready to train: fresh BN statistics, channels-last, train mode.

    ``build_op`` gives inference modules random BN statistics (so that no runtime folds them away); training
    starts from the usual zero mean, unit variance. Channels-last makes PyTorch's CPU depthwise and grouped convs
    2-3x faster to train.
    """
    for mod in m.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.reset_running_stats()
    return m.to(memory_format=torch.channels_last).train()


# ---- search --------------------------------------------------------------------------------------------------
@dataclass
class Epoch:
    """One epoch of a search: temperature, supernet accuracies, expected and derived-architecture latency."""

    phase: str
    epoch: int
    tau: float
    train_acc: float
    theta_acc: float | None
    expected_ms: float
    derived_ms: float


@dataclass
class Searched:
    weight: float
    arch: Architecture
    supernet_acc: float  # accuracy on the theta split of the supernet under softmax(theta / tau)
    history: list[Epoch] = field(default_factory=list)
    seconds: float = 0.0


class _Search:
    """One supernet, its architecture parameters theta and their optimizers; an epoch is ``steps`` batches."""

    def __init__(self, net: SuperNet, table: LatencyTable, data: dict[str, Split], cfg: SearchConfig) -> None:
        self.net, self.table, self.data, self.cfg = net, table, data, cfg
        self.hard = cfg.mode == "path"
        self.theta = torch.zeros(table.shape, requires_grad=True)
        self.opt_w = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        self.opt_t = torch.optim.Adam([self.theta], lr=cfg.theta_lr, weight_decay=5e-4)
        self.gen = torch.Generator().manual_seed(cfg.seed)

    def logits(self, detach: bool = False) -> torch.Tensor:
        # Entries past a layer's own candidate list (a table padded to the longest list) are -inf: never sampled.
        return self.table.logits(self.theta.detach() if detach else self.theta)

    def batch(self, split: str) -> Split:
        x, y = self.data[split]
        idx = torch.randint(0, len(y), (self.cfg.batch,), generator=self.gen)
        return x[idx], y[idx]

    def epoch(self, tau: float, latency_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None) -> float:
        """Train the weights (cross-entropy) and, given a latency loss, theta; returns the train accuracy."""
        correct = total = 0
        self.net.train()
        for _ in range(self.cfg.steps):
            x, y = self.batch("weights")
            m = gumbel_softmax(self.logits(detach=True), tau, hard=self.hard, generator=self.gen)
            out = self.net(x, m, self.hard)
            self.opt_w.zero_grad()
            F.cross_entropy(out, y).backward()
            self.opt_w.step()
            correct, total = correct + int((out.argmax(1) == y).sum()), total + len(y)
            if latency_loss is not None:
                x, y = self.batch("theta")
                m = gumbel_softmax(self.logits(), tau, hard=self.hard, generator=self.gen)
                loss = latency_loss(F.cross_entropy(self.net(x, m, self.hard), y), self.table.expected(m))
                self.opt_t.zero_grad()
                loss.backward()
                self.opt_t.step()
        return correct / total

    @torch.no_grad()
    def accuracy(self, tau: float, split: str = "theta") -> float:
        """Accuracy of the supernet under the architecture distribution softmax(theta / tau)."""
        self.net.eval()
        x, y = self.data[split]
        if self.hard:  # single-path supernet: evaluate the most likely path
            m = F.one_hot(torch.tensor(self.derive()), self.table.shape[1]).float()
        else:
            m = torch.softmax(self.logits(detach=True) / tau, -1)
        return float((self.net(x, m, self.hard).argmax(1) == y).float().mean())

    def derive(self) -> list[int]:
        return self.table.derive(self.logits(detach=True))

    def record(self, phase: str, epoch: int, tau: float, train_acc: float, evaluate: bool) -> Epoch:
        probs = torch.softmax(self.logits(detach=True), -1)
        derived = float(self.table.latency_of(torch.tensor(self.derive())))
        return Epoch(phase, epoch, tau, train_acc, self.accuracy(tau) if evaluate else None,
                     float(self.table.expected(probs)), derived)


def latency_loss_for(cfg: SearchConfig, table: LatencyTable, weight: float):
    """The search's loss of (CE, expected latency) at one latency weight."""
    if cfg.loss == "fbnet":
        # Latencies of small models are fractions of a millisecond: work in microseconds so that log(LAT) > 0.
        return lambda ce, lat: fbnet_loss(ce, lat, alpha=0.2, beta=weight, unit=0.001)
    # The reference is the expected latency of the uniform distribution: defined for every space.
    ref = float(table.expected(_uniform(table)))
    return lambda ce, lat: proxyless_additive_loss(ce, lat, ref=ref, lam=weight)


def _uniform(table: LatencyTable) -> torch.Tensor:
    w = table.mask.double()
    return w / w.sum(-1, keepdim=True)


def search(space: SearchSpace, table: LatencyTable, data: dict[str, Split], cfg: SearchConfig,
           progress: Progress | None = None) -> list[Searched]:
    """One DNAS per latency weight, all from one shared weight-only warm-up (FBNet trains theta from epoch 10)."""
    sched = GumbelSchedule()
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    warm = _Search(SuperNet(space), table, data, cfg)
    history = []
    _start(progress, "search warm-up", cfg.warmup_epochs)
    for e in range(cfg.warmup_epochs):
        tau = sched.tau(e)
        history.append(warm.record("warm-up", e, tau, warm.epoch(tau, None), False))
        _advance(progress, f"train acc {history[-1].train_acc:.2f}")
    _finish(progress)
    warm_seconds = time.perf_counter() - t0
    out = []
    for weight in cfg.weights:
        t1 = time.perf_counter()
        torch.manual_seed(cfg.seed)
        s = _Search(copy.deepcopy(warm.net), table, data, cfg)
        loss = latency_loss_for(cfg, table, weight)
        hist = list(history)
        _start(progress, f"search weight {weight:g}", cfg.search_epochs)
        for e in range(cfg.search_epochs):
            tau = sched.tau(cfg.warmup_epochs + e)
            hist.append(s.record("search", cfg.warmup_epochs + e, tau, s.epoch(tau, loss),
                                 e == cfg.search_epochs - 1))
            _advance(progress, f"derived {hist[-1].derived_ms:.4f} ms")
        _finish(progress)
        tau = sched.tau(max(cfg.warmup_epochs + cfg.search_epochs - 1, 0))
        arch = Architecture(f"searched-w{weight:g}", tuple(s.derive()))
        out.append(Searched(weight, space.parse_arch(arch), s.accuracy(tau), hist,
                            warm_seconds / len(cfg.weights) + time.perf_counter() - t1))
    return out


# ---- training from scratch -----------------------------------------------------------------------------------
@dataclass
class Trained:
    test_acc: float
    train_acc: float  # on the last epoch's (augmented) batches
    epochs: int
    seconds: float


def train(space: SearchSpace, arch: Architecture, data: dict[str, Split], cfg: SearchConfig,
          progress: Progress | None = None, label: str = "") -> Trained:
    """Train ``space.build_model(arch)`` from scratch on ``train``; score it once on ``test``.

    The recipe: SGD (Nesterov, momentum 0.9, wd 5e-5), one-cycle learning rate (warm-up over the first quarter,
    then cosine to ~0), label smoothing 0.1 and random affine augmentation. A fixed number of epochs, never an
    early stop on the test set.
    """
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = _trainable(space.build_model(arch))
    x, y = data["train"]
    per_epoch = max(1, len(y) // cfg.train_batch)  # drop the last partial batch: BN dislikes tiny batches
    steps = cfg.train_epochs * per_epoch
    opt = torch.optim.SGD(model.parameters(), lr=cfg.train_lr, momentum=0.9, weight_decay=5e-5, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.train_lr, total_steps=steps, pct_start=0.25)
    correct = total = 0
    _start(progress, f"train {label}".strip(), cfg.train_epochs)
    for _ in range(cfg.train_epochs):
        model.train()
        order = torch.randperm(len(y), generator=gen)
        correct = total = 0
        for i in range(per_epoch):
            idx = order[i * cfg.train_batch:(i + 1) * cfg.train_batch]
            xb, yb = x[idx], y[idx]
            if cfg.augment:
                xb = augment(xb, gen)
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            correct, total = correct + int((out.argmax(1) == yb).sum()), total + len(yb)
        _advance(progress, f"train acc {correct / total:.2f}")
    _finish(progress)
    return Trained(evaluate(model, data["test"]), correct / max(total, 1), cfg.train_epochs, time.perf_counter() - t0)


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch: int = 512) -> float:
    model.eval()
    x, y = split
    hits = sum(int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum()) for i in range(0, len(y), batch))
    return hits / len(y)


# ---- the closed loop -----------------------------------------------------------------------------------------
@dataclass
class Row:
    """One latency weight's result. ``error`` is relative, (predicted - measured) / measured."""

    weight: float
    arch: str
    choices: list[str]
    key: str
    flops: int
    params: int
    predicted_ms: float
    plain_ms: float | None
    measured_ms: float | None
    noise: float | None
    rounds: int
    test_acc: float
    train_acc: float
    supernet_acc: float
    search_seconds: float
    train_seconds: float
    status: str = "ok"
    history: list[Epoch] = field(default_factory=list, repr=False)

    @property
    def error(self) -> float | None:
        return None if not self.measured_ms else (self.predicted_ms - self.measured_ms) / self.measured_ms

    def to_dict(self, history: bool = True) -> dict[str, Any]:
        d = asdict(self)
        if not history:
            d.pop("history")
        d["error"] = self.error
        return _finite(d)


@dataclass
class Report:
    rows: list[Row]
    summary: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"summary": _finite(self.summary), "rows": [r.to_dict() for r in self.rows]}

    def to_dataframe(self):  # -> pandas.DataFrame
        import pandas as pd

        return pd.DataFrame([r.to_dict(history=False) for r in self.rows])


def _finite(obj: Any) -> Any:
    """NaN and infinities as None, so that the report is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def closed_loop(lut: LUT, space: SearchSpace, device: Any, backend: Any, cfg: SearchConfig, *, store: Any = None,
                progress: Progress | None = None) -> Report:
    """Search, train, export and measure on the LUT's device; one :class:`Row` per latency weight.

    ``backend`` runs the LUT's runtime on ``device`` (the LUT's device); whole-model rounds go into ``store``.
    """
    check_device(lut, device)
    if backend.runtime != lut.header.get("runtime"):
        raise SearchError(f"{lut.name} was measured with {lut.header.get('runtime')}; the backend runs "
                          f"{backend.runtime}: measure the searched models with the LUT's runtime")
    t0 = time.perf_counter()
    table = LatencyTable.from_lut(lut, space)
    data = digits(space.resolution, space.in_channels, cfg.seed)
    found = search(space, table, data, cfg, progress)
    t_search = time.perf_counter() - t0
    trained = [train(space, s.arch, data, cfg, progress, f"weight {s.weight:g}") for s in found]
    t_train = time.perf_counter() - t0 - t_search
    # Two weights may derive the same architecture: it is one network, measured once.
    nets = {NetworkSpec(space, s.arch).key: NetworkSpec(space, s.arch, s.arch.name) for s in found}
    measured = measure_models(lut, device, backend, list(nets.values()), rounds=cfg.rounds, seed=cfg.seed,
                              store=store, progress=progress)
    t_measure = time.perf_counter() - t0 - t_search - t_train
    rows = []
    for s, tr in zip(found, trained):
        net = NetworkSpec(space, s.arch)
        p = predict(lut, s.arch, space)
        m = measured.get(net.key)
        ok = m is not None and m.ok
        rows.append(Row(
            s.weight, s.arch.name, space.choice_names(s.arch), net.key, space.flops(s.arch), space.params(s.arch),
            p.total_ms, p.raw_total_ms, m.median_ms if ok else None, m.noise if ok else None,
            len(m.rounds) if ok else 0, tr.test_acc, tr.train_acc, s.supernet_acc, s.seconds, tr.seconds,
            "ok" if ok else f"measurement failed: {m.error if m else 'not measured'}", s.history,
        ))
    h = lut.header
    summary = {
        "lut": lut.name, "space": space.id, "device": h.get("device"), "runtime": h.get("runtime"),
        "threads": h.get("threads"), "config": cfg.to_dict(), "torch_threads": torch.get_num_threads(),
        "seconds": {"search": t_search, "train": t_train, "measure": t_measure,
                    "total": time.perf_counter() - t0},
        "latency_falls": all(b.predicted_ms <= a.predicted_ms for a, b in zip(rows, rows[1:])),
    }
    return Report(rows, summary)


def _start(p: Progress | None, phase: str, total: int) -> None:
    if p:
        p.start(phase, total)


def _advance(p: Progress | None, item: str) -> None:
    if p:
        p.advance(item)


def _finish(p: Progress | None) -> None:
    if p:
        p.finish()


# ---- plot ----------------------------------------------------------------------------------------------------
def write_plot(report: Report, path: str | Path, title: str = "") -> Path:
    """Test accuracy against measured latency, one point per latency weight, predicted latency as a hollow mark."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = check_output_path(path)
    rows = [r for r in report.rows if r.measured_ms]
    if not rows:
        raise SearchError("nothing to plot: no searched model was measured")
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    ax.scatter([r.predicted_ms for r in rows], [r.test_acc for r in rows], s=40, facecolors="none",
               edgecolors="tab:gray", label="LUT prediction")
    ax.scatter([r.measured_ms for r in rows], [r.test_acc for r in rows], s=40, c="tab:blue", label="measured")
    for r in rows:
        ax.plot([r.predicted_ms, r.measured_ms], [r.test_acc, r.test_acc], color="tab:gray", lw=0.8)
        ax.annotate(f"w={r.weight:g}", (r.measured_ms, r.test_acc), textcoords="offset points", xytext=(5, 4),
                    fontsize=8)
    ax.set(xlabel="latency (ms)", ylabel="test accuracy (digits)", title=title)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


__all__ = ["Report", "Row", "SearchConfig", "SearchError", "SuperNet", "closed_loop", "digits", "evaluate",
           "search", "train", "write_plot"]
