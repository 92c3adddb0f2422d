"""PyTorch eager on the local CPU: the module built straight from the op spec."""

from __future__ import annotations

from pathlib import Path

from latency_lut.backends.base import Backend
from latency_lut.measure import Protocol, RunResult, time_callable
from latency_lut.ops import OpSpec


class TorchBackend(Backend):
    runtime = "torch"
    artifact_format = None

    def __init__(self, threads: int = 1) -> None:
        super().__init__(threads)
        import torch

        self._torch = torch
        torch.set_num_threads(threads)

    def runtime_version(self) -> str:
        return self._torch.__version__

    def measure(self, spec: OpSpec, artifact: Path | None, protocol: Protocol) -> RunResult:
        torch = self._torch
        module = spec.build_module()
        x = torch.randn(*spec.input_shape, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            return RunResult(time_callable(lambda: module(x), protocol))
