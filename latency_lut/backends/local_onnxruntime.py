"""ONNX Runtime on the local CPU."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from latency_lut.backends.base import Backend, cold_copies, sample_input
from latency_lut.measure import Protocol, RunResult, time_callable
from latency_lut.ops import OpSpec

_NUMPY = {"tensor(float)": np.float32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8}  # input types we export

# A unit timed alone finds its weights in cache, left there by its previous call; inside a network they were last
# read a whole inference ago and come from memory. Measured here (1 thread, 32 MiB L3): MobileNetV3's 1280x1000
# classifier takes 0.07 ms alone and 0.29 ms inside the network, its 960->1280 head conv 0.10 against 0.22 ms, and
# the network's sum of hot units came out 18% under it. So a block unit is timed rotating over COLD_COPIES
# sessions of it, each holding its own weights (16 copies of a 5 MB layer pass any last-level cache), that share
# one arena for activations, so that its input and intermediates stay as hot as in a network, where the previous
# layer just wrote them (without the shared arena every block came out ~30% slow, fc or not). A whole model is
# timed as it is deployed: one session, called again and again.
COLD_COPIES = 16
_ENV_ARENA: list[bool] = []  # the process-wide arena is registered once


class OnnxRuntimeBackend(Backend):
    runtime = "onnxruntime"
    artifact_format = "onnx"
    cold_models = True

    def __init__(self, threads: int = 1, optimization: str = "all", weights: str = "cold") -> None:
        super().__init__(threads)
        if weights not in ("cold", "hot"):
            raise ValueError(f"weights must be 'cold' or 'hot', got {weights!r}")
        self.weights = weights
        import onnxruntime as ort

        self._ort = ort
        levels = {
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }
        self.optimization = optimization
        self._level = levels[optimization]

    def runtime_version(self) -> str:
        return self._ort.__version__

    def settings(self) -> dict:
        # "weights" is left out when hot, so LUTs measured before cold units keep their settings hash
        return {**super().settings(), "optimization": self.optimization,
                **({"weights": "cold"} if self.weights == "cold" else {})}

    def session(self, path: Path, shared_arena: bool = False):  # -> onnxruntime.InferenceSession
        so = self._ort.SessionOptions()
        if shared_arena:
            if not _ENV_ARENA:
                mem = self._ort.OrtMemoryInfo("Cpu", self._ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                                              self._ort.OrtMemType.DEFAULT)
                self._ort.create_and_register_allocator(mem, self._ort.OrtArenaCfg(0, -1, -1, -1))
                _ENV_ARENA.append(True)
            so.add_session_config_entry("session.use_env_allocators", "1")
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = self._ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = self._level
        so.log_severity_level = 3
        return self._ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def measure(self, spec: OpSpec, artifact: Path | None, protocol: Protocol) -> RunResult:
        assert artifact is not None
        unit = isinstance(spec, OpSpec)
        copies = (COLD_COPIES if self.weights == "cold" else 1) if unit else cold_copies(spec, artifact)
        # A unit's copies share one arena (its activations as hot as in a network); a cold model's do not.
        sessions = [self.session(artifact, shared_arena=copies > 1 and unit) for _ in range(copies)]
        inp = sessions[0].get_inputs()[0]
        feed = {inp.name: sample_input(spec.input_shape, _NUMPY[inp.type])}
        runs = [s.run for s in sessions]
        for run in runs if copies > 1 else ():  # a first call allocates: each copy's is left untimed
            run(None, feed)
        turn = itertools.cycle(runs)
        return RunResult(time_callable(lambda: next(turn)(None, feed), protocol),
                         extra={"weight_copies": copies} if copies > 1 else {})
