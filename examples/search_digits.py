"""A small FBNet DNAS run that consumes a LUT measured on this machine.

Data: scikit-learn's handwritten digits (1797 images of 8x8, shipped with the package), upscaled to the space's
resolution. Space: FBNet at a small resolution and width (default 32 px, width 0.25), with its LUT built here on
the local CPU with ONNX Runtime if the file does not exist yet (through the library, measurements cached in the
store). The supernet holds all 9 candidates of all 22 layers; each step samples Gumbel-softmax weights with
FBNet's temperature schedule (5.0 * exp(-0.045 * epoch)) and runs FBNet's weighted sum of all candidates
(``--mode path`` runs only the sampled one: 9x cheaper per step, but the supernet then learns far more slowly).
An "epoch" here is ``--steps`` batches, to keep the run to minutes on 2 CPU cores; the weight-only warm-up is
shared by every latency weight. The weights are trained on one split with
cross-entropy, the architecture parameters theta on another with the FBNet loss CE * alpha * log(LAT)^beta, where
LAT is the LUT's expected latency of the sampled weights. The latency weight is beta (alpha only scales the whole
loss, and Adam is invariant to that scale); the script runs once per latency weight and ends with a table: the
derived architecture's LUT-predicted latency drops as the weight rises.

    python examples/search_digits.py                       # 3 latency weights, a few minutes on 2 cores
    python examples/search_digits.py --weights 0,2 --epochs 6 --loss additive

Needs scikit-learn (pip install 'fbnet-lut[examples]').
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from latency_lut import load, predict
from latency_lut.blocks import build_op
from latency_lut.dnas import GumbelSchedule, LatencyTable, fbnet_loss, gumbel_softmax, proxyless_additive_loss
from latency_lut.spaces import SearchSpace, get_space


# ---- the LUT -------------------------------------------------------------------------------------------------
def ensure_lut(space: SearchSpace, path: Path, store: Path):
    """Load the LUT of ``space``, or measure it on the local CPU (ONNX Runtime, 1 thread) and save it."""
    if path.exists():
        return load(path)
    from latency_lut.backends import create_backend
    from latency_lut.build import build_lut
    from latency_lut.devices import get_device
    from latency_lut.measure import Protocol
    from latency_lut.store import Store

    print(f"building the LUT of {space.id} on the local CPU -> {path}")
    device = get_device("local")
    backend = create_backend(device, "onnxruntime", threads=1)
    t0 = time.perf_counter()
    try:
        with Store(store) as st:
            res = build_lut(space, device, backend, st, Protocol())
    finally:
        backend.close()
    res.lut.save(path)
    print(f"  {len(res.lut)} ops, {res.measured} measured, {time.perf_counter() - t0:.0f} s")
    return res.lut


# ---- data ----------------------------------------------------------------------------------------------------
def digits(resolution: int, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    x = ((x - 0.3) / 0.4).expand(-1, 3, -1, -1).contiguous()  # 3 channels: the space's stem takes RGB
    y = torch.tensor(d.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n = len(y)
    # FBNet trains the weights on 80% of the training data and theta on the other 20%; we also keep a test split.
    cut1, cut2 = int(0.6 * n), int(0.8 * n)
    parts = {"weights": perm[:cut1], "theta": perm[cut1:cut2], "test": perm[cut2:]}
    return {k: (x[i], y[i]) for k, i in parts.items()}


# ---- the supernet --------------------------------------------------------------------------------------------
class MixedLayer(nn.Module):
    """All candidates of one layer, combined with architecture weights m: sum_i m_i * op_i(x)."""

    def __init__(self, space: SearchSpace, layer) -> None:
        super().__init__()
        self.ops = nn.ModuleList(build_op(space.candidate_spec(layer, c)).train() for c in space.candidates)

    def forward(self, x: torch.Tensor, m: torch.Tensor, single_path: bool = False) -> torch.Tensor:
        if single_path:
            # m is a straight-through one-hot sample: only the sampled candidate runs (GDAS-style), and theta
            # still gets its gradient through m[k], whose value is 1.
            k = int(m.detach().argmax())
            return m[k] * self.ops[k](x)
        return sum(w * op(x) for w, op in zip(m, self.ops))


class SuperNet(nn.Module):
    def __init__(self, space: SearchSpace, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = build_op(space.stem_spec()).train()
        self.layers = nn.ModuleList(MixedLayer(space, l) for l in space.layers())
        head = space.tail_specs()[0]
        self.head = build_op(head).train()
        # The LUT prices the space's 1000-class classifier (a fixed cost); digits need 10 classes.
        self.fc = nn.Linear(head.cout, num_classes)

    def forward(self, x: torch.Tensor, m: torch.Tensor, single_path: bool = False) -> torch.Tensor:
        x = self.stem(x)
        for layer, ml in zip(self.layers, m):
            x = layer(x, ml, single_path)
        return self.fc(self.head(x).mean(dim=(2, 3)))


# ---- search ----------------------------------------------------------------------------------------------------
class Trainer:
    """One supernet, its architecture parameters theta and their optimizers; an epoch is ``steps`` batches."""

    def __init__(self, net: SuperNet, table: LatencyTable, data, args) -> None:
        self.net, self.table, self.data, self.args = net, table, data, args
        self.hard = args.mode == "path"
        self.theta = torch.zeros(table.shape, requires_grad=True)
        if args.optimizer == "sgd":  # FBNet's choice; needs far more steps than this demo takes
            self.opt_w: torch.optim.Optimizer = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9,
                                                                weight_decay=1e-4, nesterov=True)
        else:
            self.opt_w = torch.optim.Adam(net.parameters(), lr=args.lr)
        self.opt_t = torch.optim.Adam([self.theta], lr=args.theta_lr, weight_decay=5e-4)
        self.gen = torch.Generator().manual_seed(args.seed)

    def batch(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.data[split]
        idx = torch.randint(0, len(y), (self.args.batch,), generator=self.gen)
        return x[idx], y[idx]

    def epoch(self, tau: float, latency_loss=None) -> float:
        """Train the weights (cross-entropy) and, given a latency loss, theta; returns the train accuracy."""
        correct = total = 0
        self.net.train()
        for _ in range(self.args.steps):
            x, y = self.batch("weights")
            m = gumbel_softmax(self.theta.detach(), tau, hard=self.hard, generator=self.gen)
            out = self.net(x, m, self.hard)
            self.opt_w.zero_grad()
            F.cross_entropy(out, y).backward()
            self.opt_w.step()
            correct, total = correct + int((out.argmax(1) == y).sum()), total + len(y)
            if latency_loss is not None:
                x, y = self.batch("theta")
                m = gumbel_softmax(self.theta, tau, hard=self.hard, generator=self.gen)
                loss = latency_loss(F.cross_entropy(self.net(x, m, self.hard), y), self.table.expected(m))
                self.opt_t.zero_grad()
                loss.backward()
                self.opt_t.step()
        return correct / total

    @torch.no_grad()
    def test_accuracy(self, tau: float) -> float:
        """Test accuracy of the supernet under the current architecture distribution softmax(theta / tau)."""
        self.net.eval()
        x, y = self.data["test"]
        if self.hard:  # single-path supernet: evaluate the most likely path
            m = F.one_hot(torch.tensor(self.table.derive(self.theta)), self.table.shape[1]).float()
        else:
            m = torch.softmax(self.theta.detach() / tau, -1)
        return float((self.net(x, m, self.hard).argmax(1) == y).float().mean())


HEADER = f"{'phase':>8} {'epoch':>5} {'tau':>6} {'train acc':>9} {'test acc':>8} {'E[lat] ms':>9} {'derived ms':>10}"


def report(tr: Trainer, lut, phase: str, epoch: int, tau: float, train_acc: float) -> None:
    exp_lat = float(tr.table.expected(torch.softmax(tr.theta.detach(), -1)))
    derived = predict(lut, tr.table.derive(tr.theta)).total_ms
    print(f"{phase:>8} {epoch:>5} {tau:>6.3f} {train_acc:>9.3f} {tr.test_accuracy(tau):>8.3f} {exp_lat:>9.4f} "
          f"{derived:>10.4f}")


def search(space, lut, table: LatencyTable, warm: SuperNet, data, weight: float, args) -> dict:
    """Search theta from the shared warmed-up supernet with one latency weight."""
    torch.manual_seed(args.seed)
    tr = Trainer(copy.deepcopy(warm), table, data, args)
    ref = float(table.latency_of(torch.zeros(table.shape[0], dtype=torch.long)))  # all k3_e1: ProxylessNAS ref

    def latency_loss(ce: torch.Tensor, lat: torch.Tensor) -> torch.Tensor:
        if args.loss == "fbnet":
            # Latencies here are fractions of a millisecond: work in microseconds so that log(LAT) > 0.
            return fbnet_loss(ce, lat, alpha=0.2, beta=weight, unit=0.001)
        return proxyless_additive_loss(ce, lat, ref=ref, lam=weight)

    print(f"\n== latency weight {weight:g} ({args.loss} loss) ==")
    print(HEADER)
    sched = GumbelSchedule()
    for e in range(args.epochs):
        epoch = args.warmup_epochs + e
        tau = sched.tau(epoch)
        report(tr, lut, "search", epoch, tau, tr.epoch(tau, latency_loss))
    arch = table.derive(tr.theta)
    return {"weight": weight, "arch": arch, "predicted_ms": predict(lut, arch).total_ms,
            "acc": tr.test_accuracy(sched.tau(args.warmup_epochs + args.epochs - 1)), "flops": space.flops(arch)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--lut", type=Path, default=None, help="LUT file [default: profiles/local-onnxruntime-R-wW.json]")
    ap.add_argument("--store", type=Path, default=Path("profiles/store.sqlite"))
    ap.add_argument("--weights", default="0,1,4", help="Latency weights to compare (beta, or lambda for additive).")
    ap.add_argument("--loss", choices=["fbnet", "additive"], default="fbnet")
    ap.add_argument("--epochs", type=int, default=4, help="search epochs per latency weight")
    ap.add_argument("--warmup-epochs", type=int, default=3, help="shared weight-only epochs before the search")
    ap.add_argument("--steps", type=int, default=10, help="batches per epoch (weights, and theta in the search)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--mode", choices=["soft", "path"], default="soft",
                    help="soft: FBNet's Gumbel-softmax weighted sum of all 9 candidates per layer; path: hard "
                         "samples, only the sampled candidate runs (9x cheaper per step, but the supernet learns "
                         "far more slowly)")
    ap.add_argument("--optimizer", choices=["adam", "sgd"], default="adam",
                    help="optimizer of the weights (FBNet: SGD lr 0.1, over 90 epochs of ImageNet)")
    ap.add_argument("--lr", type=float, default=3e-3, help="learning rate of the weights")
    ap.add_argument("--theta-lr", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for training")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows up per epoch even when piped to a file
    torch.set_num_threads(args.threads)

    space = get_space("fbnet", args.resolution, args.width)
    path = args.lut or Path("profiles") / f"local-onnxruntime-{space.id.split('-', 1)[1]}.json"
    lut = ensure_lut(space, path, args.store)
    table = LatencyTable.from_lut(lut, space)
    lo, hi = float(table.table.min(-1).values.sum()), float(table.table.max(-1).values.sum())
    print(f"LUT {path}: {lut.header['device']} / {lut.header['runtime']}, {len(lut)} ops; fixed cost "
          f"{table.fixed:.4f} ms; architectures span {table.fixed + lo:.4f}-{table.fixed + hi:.4f} ms")
    data = digits(args.resolution, args.seed)
    t0 = time.perf_counter()
    # FBNet trains only the weights for the first epochs; that warm-up is shared by every latency weight, so each
    # search starts from the same supernet and differs only in its latency term.
    torch.manual_seed(args.seed)
    warm = Trainer(SuperNet(space), table, data, args)
    print("\n== warm-up: weights only, theta = 0 ==")
    print(HEADER)
    for epoch in range(args.warmup_epochs):
        tau = GumbelSchedule().tau(epoch)
        report(warm, lut, "warm-up", epoch, tau, warm.epoch(tau))
    results = [search(space, lut, table, warm.net, data, float(w), args) for w in args.weights.split(",")]

    print(f"\nderived architectures ({args.loss} loss, {args.epochs} epochs, {time.perf_counter() - t0:.0f} s)")
    print(f"{'latency weight':>14} {'predicted ms':>12} {'MMACs':>7} {'supernet acc':>12}  architecture")
    for r in results:
        names = " ".join(space.candidates[c] for c in r["arch"])
        print(f"{r['weight']:>14g} {r['predicted_ms']:>12.4f} {r['flops'] / 1e6:>7.2f} {r['acc']:>12.3f}  {names}")
    lats = [r["predicted_ms"] for r in results]
    trend = all(b <= a for a, b in zip(lats, lats[1:]))
    print(f"\npredicted latency {'falls' if trend else 'does NOT fall monotonically'} as the latency weight rises "
          f"({' -> '.join(f'{v:.4f}' for v in lats)} ms)")
    if not math.isfinite(sum(lats)):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
