"""LiteRT (ai-edge-litert, the successor of tflite-runtime) on the local CPU, with XNNPACK as deployed."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from latency_lut.backends.base import Backend, sample_input
from latency_lut.measure import Protocol, RunResult, time_callable
from latency_lut.ops import OpSpec


class LiteRTBackend(Backend):
    runtime = "litert"
    artifact_format = "tflite"

    def __init__(self, threads: int = 1, xnnpack: bool = True) -> None:
        super().__init__(threads)
        from ai_edge_litert import interpreter

        self._mod = interpreter
        self.xnnpack = xnnpack

    def runtime_version(self) -> str:
        return metadata.version("ai-edge-litert")

    def settings(self) -> dict:
        return {**super().settings(), "xnnpack": self.xnnpack}

    def interpreter(self, path: Path):  # -> ai_edge_litert.interpreter.Interpreter
        types = self._mod.OpResolverType
        resolver = types.AUTO if self.xnnpack else types.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        it = self._mod.Interpreter(model_path=str(path), num_threads=self.threads,
                                   experimental_op_resolver_type=resolver)
        it.allocate_tensors()
        return it

    def measure(self, spec: OpSpec, artifact: Path | None, protocol: Protocol) -> RunResult:
        assert artifact is not None
        it = self.interpreter(artifact)
        d = it.get_input_details()[0]
        it.set_tensor(d["index"], sample_input(d["shape"], d["dtype"]))
        return RunResult(time_callable(it.invoke, protocol))
