"""LiteRT (ai-edge-litert, the successor of tflite-runtime) on the local CPU, with XNNPACK as deployed."""

from __future__ import annotations

import contextlib
import gc
import itertools
from collections.abc import Callable, Iterator
from functools import partial
from importlib import metadata
from pathlib import Path

from latency_lut.backends.base import Backend, cold_copies, sample_input
from latency_lut.errors import LatencyLutError
from latency_lut.measure import Protocol, RunResult, time_callable
from latency_lut.ops import OpSpec


class LiteRTBackend(Backend):
    runtime = "litert"
    artifact_format = "tflite"
    cold_models = True

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

    def compiled_fp16(self, path: Path) -> contextlib.AbstractContextManager[Callable[[], None]]:
        """fp16 inference, as a callable running one: the Interpreter has no XNNPACK flags, LiteRT's CompiledModel
        takes them (FORCE_FP16)."""
        from latency_lut.quantize import XNNPACK_FLAGS_FP16

        return self.compiled(path, XNNPACK_FLAGS_FP16)

    @contextlib.contextmanager
    def compiled(self, path: Path, xnnpack_flags: int) -> Iterator[Callable[[], None]]:
        """A callable running one inference of ``path`` through LiteRT's CompiledModel with these XNNPACK flags.

        Its first run and its release log every accelerator LiteRT registers or destroys, so they happen quietly
        here (the first run is one more warmup)."""
        from ai_edge_litert import options
        from ai_edge_litert.compiled_model import CompiledModel

        from latency_lut.export import _quiet_native_output

        cpu = options.CpuOptions(num_threads=self.threads, xnnpack_flags=xnnpack_flags)
        with _quiet_native_output():
            model = CompiledModel.from_file(str(path), options=options.Options(cpu_options=cpu))
            held = [partial(model.run_by_index, 0, model.create_input_buffers(0), model.create_output_buffers(0))]
            del model
            held[0]()
        try:
            yield lambda: held[0]()
        finally:
            with _quiet_native_output():
                held.clear()  # the model and its environment go now, not when the caller lets go
                gc.collect()

    def measure(self, spec: OpSpec, artifact: Path | None, protocol: Protocol) -> RunResult:
        assert artifact is not None
        if self.dtype == "fp16":
            if cold_copies(spec, artifact) > 1:
                raise LatencyLutError(f"{spec.key}: a cold whole model is timed with the Interpreter, and fp16 "
                                      "runs through LiteRT's CompiledModel; measure it with --weights hot")
            with self.compiled_fp16(artifact) as run:
                return RunResult(time_callable(run, protocol))
        copies = cold_copies(spec, artifact)
        its = [self.interpreter(artifact) for _ in range(copies)]
        d = its[0].get_input_details()[0]
        x = sample_input(d["shape"], d["dtype"])
        for it in its:
            it.set_tensor(d["index"], x)
        if copies == 1:
            return RunResult(time_callable(its[0].invoke, protocol))
        for it in its:  # a first invoke sets XNNPACK up: each copy's is left untimed
            it.invoke()
        turn = itertools.cycle([it.invoke for it in its])
        return RunResult(time_callable(lambda: next(turn)(), protocol), extra={"weight_copies": copies})
