"""The closed search loop through the library: search, train, export and measure on this CPU.

An FBNet DNAS on scikit-learn's digits at 32 px, width 0.25, with a LUT measured on this CPU (ONNX Runtime,
1 thread; built here if the file does not exist, measurements cached in the store). Each latency weight derives
an architecture, which is then trained from scratch, scored on a held-out test split, exported and measured end to
end; the table sets the LUT's prediction against the measurement. ``fbnet-lut search`` is the same loop with
every option, progress bars, ``--json`` and ``--plot``.

    python examples/search_digits.py                    # 3 latency weights, ~5 minutes on 2 cores
    python examples/search_digits.py --space fbnet --weights 0,2 --train-epochs 10

Needs scikit-learn (pip install 'fbnet-lut[examples]').
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from latency_lut import load
from latency_lut.backends import create_backend
from latency_lut.build import build_lut
from latency_lut.devices import get_device
from latency_lut.measure import Protocol
from latency_lut.paths import default_lut_path
from latency_lut.search import SearchConfig, closed_loop
from latency_lut.spaces import get_space
from latency_lut.store import Store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="fbnet")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--weights", default="0,1,4", help="latency weights, one search each")
    ap.add_argument("--train-epochs", type=int, default=SearchConfig.train_epochs)
    ap.add_argument("--store", type=Path, default=Path("profiles/store.sqlite"))
    args = ap.parse_args()
    torch.set_num_threads(1)  # small models train fastest on one thread of a shared host

    space = get_space(args.space, args.resolution, args.width)
    device = get_device("local")
    path = default_lut_path(device.name, "onnxruntime", space.id)
    cfg = SearchConfig(weights=tuple(float(w) for w in args.weights.split(",")), train_epochs=args.train_epochs)
    backend = create_backend(device, "onnxruntime", threads=1)
    try:
        with Store(args.store) as store:
            if path.exists():
                lut = load(path)
            else:  # only the ops the store lacks are measured
                lut = build_lut(space, device, backend, store, Protocol()).lut
                lut.save(path)
            report = closed_loop(lut, space, device, backend, cfg, store=store)
    finally:
        backend.close()
    df = report.to_dataframe()[["weight", "predicted_ms", "measured_ms", "error", "test_acc", "flops"]]
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"{space.id}, {report.summary['seconds']['total']:.0f} s; architectures:")
    for r in report.rows:
        print(f"  {r.weight:g}: {' '.join(r.choices)}")


if __name__ == "__main__":
    main()
