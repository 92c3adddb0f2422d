"""What every backend provides: run one artifact under one protocol and return raw samples."""

from __future__ import annotations

import platform
import socket
from abc import ABC, abstractmethod
from functools import lru_cache
from pathlib import Path
from typing import Any

from latency_lut.measure import Protocol, RunResult
from latency_lut.ops import OpSpec

# A whole model timed "cold" (``ModelUnit.weights``) runs rotating over copies of itself, each with its own
# weights and arena, so that none of its memory is in cache when an inference starts -- as in an app that does
# other work between frames, or on a phone, whose last-level cache (2-8 MB) holds no mobile CNN. The copies
# together pass COLD_MODEL_BYTES, twice this project's host's 32 MiB L3: MobileNetV3-Small (10 MB of weights)
# ran 2.60 ms back to back there and 2.86-2.90 ms over 2 to 8 copies (ONNX Runtime; LiteRT 1.63 -> 1.94).
COLD_MODEL_BYTES = 64 * 2**20
MAX_COLD_COPIES = 16


def cold_copies(spec: Any, artifact: Path | None) -> int:
    """How many copies of ``spec`` a measurement rotates over: 1, or enough for a cold whole model."""
    if getattr(spec, "weights", "hot") != "cold":
        return 1
    size = artifact.stat().st_size if artifact is not None and artifact.exists() else 0
    return max(2, min(MAX_COLD_COPIES, -(-COLD_MODEL_BYTES // max(size, 1))))


class Backend(ABC):
    """One runtime on one device.

    ``artifact_format`` names what the backend runs ("onnx", "tflite"), or None when it builds the op itself;
    ``dtype`` what its artifacts are quantized to (set by ``create_backend``, checked against the runtime).
    Backends are created per build and closed when it ends.
    """

    runtime: str = ""
    artifact_format: str | None = None
    dtype: str = "fp32"
    cold_models = False  # measures a whole model with cold weights (``cold_copies``)

    def __init__(self, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError("threads must be >= 1")
        self.threads = threads

    @abstractmethod
    def runtime_version(self) -> str: ...

    def use_dtype(self, dtype: str) -> None:
        """Run artifacts in ``dtype`` (the runtime is known to run it); a device that cannot, refuses it here with a
        :class:`~latency_lut.quantize.DtypeError` naming the device."""
        self.dtype = dtype

    @abstractmethod
    def measure(self, spec: OpSpec, artifact: Path | None, protocol: Protocol) -> RunResult:
        """One attempt at one unit: warmup, timed runs, raw samples in ms.

        ``spec`` is duck-typed: anything with ``key``, ``input_shape`` (NCHW) and ``build_module()`` can be
        measured, an :class:`OpSpec` or a whole network. ``artifact`` is its exported file in
        ``artifact_format`` (None for backends that build the module themselves).
        """

    def settings(self) -> dict[str, Any]:
        """Everything that changes what a measurement means, besides the protocol and exporter."""
        return {"runtime": self.runtime, "runtime_version": self.runtime_version(), "threads": self.threads}

    def device_info(self) -> dict[str, Any]:
        return host_info()

    def fingerprint(self) -> str:
        """Identifies the physical device, so stores shared between machines keep them apart."""
        info = host_info()
        return f"{info['hostname']}|{info['cpu_model']}|{info['machine']}"

    def close(self) -> None:
        """Release sessions, connections, pushed files."""


def sample_input(shape: Any, dtype: Any) -> Any:
    """A fixed random input of ``shape`` in ``dtype`` (standard normal floats, or integers over the full range for
    an int8 model's int8 input)."""
    import numpy as np

    rng = np.random.default_rng(0)
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, size=tuple(shape), endpoint=True).astype(dt)
    return rng.standard_normal(tuple(shape)).astype(dt)


@lru_cache(maxsize=1)
def host_info() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "cpu_model": _cpu_model(),
        "cpu_count": _cpu_count(),
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "llc_bytes": _llc_bytes(),
    }


def _llc_bytes() -> int | None:
    """The size of the last-level cache CPU 0 sees (Linux sysfs), or None where it cannot be read."""
    best: tuple[int, int] | None = None
    for d in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            if (d / "type").read_text().strip() == "Instruction":
                continue
            level, size = int((d / "level").read_text()), (d / "size").read_text().strip().upper()
            n = int(size.rstrip("KMG")) * {"K": 2**10, "M": 2**20, "G": 2**30}.get(size[-1:], 1)
        except (OSError, ValueError):
            continue
        best = max(best or (level, n), (level, n))
    return best[1] if best else None


def _cpu_count() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
