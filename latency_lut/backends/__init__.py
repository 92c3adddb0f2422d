"""Backend registry: (device kind, runtime) -> backend class, imported only when used."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from latency_lut.errors import DeviceError

if TYPE_CHECKING:
    from latency_lut.backends.base import Backend
    from latency_lut.devices import Device

# "module:Class" so that importing the registry imports no runtime.
BACKENDS: dict[tuple[str, str], str] = {
    ("local", "onnxruntime"): "latency_lut.backends.local_onnxruntime:OnnxRuntimeBackend",
    ("local", "litert"): "latency_lut.backends.local_litert:LiteRTBackend",
    ("local", "torch"): "latency_lut.backends.local_torch:TorchBackend",
    ("android", "litert"): "latency_lut.backends.android.backend:AndroidBackend",
    ("ssh", "litert"): "latency_lut.backends.ssh.backend:SshLiteRTBackend",
    ("ssh", "onnxruntime"): "latency_lut.backends.ssh.backend:SshOnnxRuntimeBackend",
}


def runtimes_for(kind: str) -> list[str]:
    return [rt for (k, rt) in BACKENDS if k == kind]


def backend_class(kind: str, runtime: str) -> type[Backend]:
    target = BACKENDS.get((kind, runtime))
    if target is None:
        known = ", ".join(runtimes_for(kind)) or "none"
        raise DeviceError(f"runtime {runtime!r} is not available on {kind} devices; choose one of: {known}")
    mod, cls = target.split(":")
    try:
        return getattr(importlib.import_module(mod), cls)
    except ImportError as e:
        raise DeviceError(
            f"runtime {runtime!r} needs the Python package {e.name!r}, which is not installed; "
            f"run: pip install {e.name}"
        ) from e


def check_runtime(device: Device, runtime: str | None = None) -> str:
    """``runtime`` (the descriptor's default if None), if the descriptor offers it; else an error naming both."""
    rt = runtime or device.runtime
    if device.runtimes and rt not in device.runtimes:
        raise DeviceError(
            f"device {device.name!r} does not offer runtime {rt!r}; its runtimes: {', '.join(device.runtimes)}"
        )
    return rt


def create_backend(device: Device, runtime: str | None = None, dtype: str = "fp32", **overrides: Any) -> Backend:
    """The backend for a device descriptor and runtime (the descriptor's default runtime if None), running
    artifacts in ``dtype`` (a :class:`~latency_lut.quantize.DtypeError` if that runtime cannot)."""
    from latency_lut.quantize import check_dtype

    rt = check_runtime(device, runtime)
    check_dtype(rt, dtype, device.name, device.kind)
    cls = backend_class(device.kind, rt)
    backend = cls.from_device(device, **overrides) if hasattr(cls, "from_device") else cls(
        threads=overrides.get("threads") or device.threads
    )
    try:
        backend.use_dtype(dtype)
    except BaseException:
        backend.close()
        raise
    return backend
