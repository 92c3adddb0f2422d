"""ONNX Runtime on the local CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from latency_lut.backends.base import Backend, sample_input
from latency_lut.measure import Protocol, RunResult, time_callable
from latency_lut.ops import OpSpec

_NUMPY = {"tensor(float)": np.float32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8}  # input types we export


class OnnxRuntimeBackend(Backend):
    runtime = "onnxruntime"
    artifact_format = "onnx"

    def __init__(self, threads: int = 1, optimization: str = "all") -> None:
        super().__init__(threads)
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
        return {**super().settings(), "optimization": self.optimization}

    def session(self, path: Path):  # -> onnxruntime.InferenceSession
        so = self._ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = self._ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = self._level
        so.log_severity_level = 3
        return self._ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def measure(self, spec: OpSpec, artifact: Path | None, protocol: Protocol) -> RunResult:
        assert artifact is not None
        sess = self.session(artifact)
        inp = sess.get_inputs()[0]
        feed = {inp.name: sample_input(spec.input_shape, _NUMPY[inp.type])}
        run = sess.run
        return RunResult(time_callable(lambda: run(None, feed), protocol))
