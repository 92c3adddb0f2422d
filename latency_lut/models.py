"""Whole models of any origin as measurable units: a torch module, an ONNX file, or an architecture of a space.

A :class:`ModelUnit` quacks like an :class:`~latency_lut.ops.OpSpec` (``key``, ``input_shape``,
``build_module()``), so every backend measures it as it measures one block. Its key is derived from the content
of the exported model the runtime runs (``model-{first 16 hex digits of its SHA-256}``), so the same model
exported the same way has the same key in the store on every machine, and two different models never share one.

Measuring follows the build's protocol in interleaved rounds (``latency_lut.networks``): each round visits every
model once in a fresh order, and a model's latency is the median of its round medians. Every round is stored as it
is taken, so a killed run resumes.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latency_lut.checksums import sha256_file
from latency_lut.decompose import ModelError
from latency_lut.errors import ExportError, LatencyLutError
from latency_lut.measure import Protocol
from latency_lut.networks import NetMeasurement, measure_stored

MODEL_PREFIX = "model-"
COLD_SUFFIX = "-cold"
WEIGHTS = ("hot", "cold")


class ModuleSpecError(LatencyLutError):
    """A --module value that does not name an importable factory or module."""


def load_model(target: str) -> Any:
    """The nn.Module named by ``pkg.mod:name`` or ``file.py:name`` (a factory is called without arguments)."""
    mod_name, sep, attr = target.rpartition(":")
    if not sep or not mod_name or not attr:
        raise ModuleSpecError(f"--module {target!r} must look like pkg.mod:factory or path/to/file.py:factory")
    try:
        if mod_name.endswith(".py"):
            path = Path(mod_name)
            if not path.is_file():
                raise ModuleSpecError(f"--module: file {path} does not exist")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            spec.loader.exec_module(mod)  # type: ignore[union-attr]
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())  # like 'python -m': modules beside the user are importable
            mod = importlib.import_module(mod_name)
    except ModuleSpecError:
        raise
    except ImportError as e:
        raise ModuleSpecError(f"--module: cannot import {mod_name!r} ({e}); check the name and PYTHONPATH") from None
    except (Exception, SystemExit) as e:  # a module that calls sys.exit() on import is the user's to fix too
        raise ModuleSpecError(f"--module: importing {mod_name!r} failed: {type(e).__name__}: {e}") from None
    if not hasattr(mod, attr):
        raise ModuleSpecError(f"--module: {mod_name!r} has no attribute {attr!r}")
    obj = getattr(mod, attr)
    import torch

    if not isinstance(obj, torch.nn.Module):
        if not callable(obj):
            raise ModuleSpecError(f"--module: {target!r} is neither an nn.Module nor a factory")
        try:
            # fixed initial weights: the same factory exports the same model, so its content key repeats
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                obj = obj()
        except Exception as e:
            raise ModuleSpecError(f"--module: calling {target}() failed: {type(e).__name__}: {e}") from None
        if not isinstance(obj, torch.nn.Module):
            raise ModuleSpecError(f"--module: {target}() returned {type(obj).__name__}, not a torch nn.Module")
    return obj


def infer_input_shape(model: Any, resolution: int = 224) -> tuple[int, ...]:
    """``(1, C, R, R)`` with C the input channels of the model's first conv; an error asking for the shape when
    the model does not start with one."""
    from torch import nn

    first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.RNNBase))), None)
    if not isinstance(first, nn.Conv2d):
        raise ModelError(f"cannot infer the input shape of {type(model).__name__} (its first layer is "
                         f"{type(first).__name__ if first is not None else 'not a conv'}); give it with "
                         "--input-shape N,C,H,W (input_shape=...)")
    return (1, first.in_channels, resolution, resolution)


@dataclass
class ModelUnit:
    """One whole model to measure. ``module`` (a torch nn.Module) or ``onnx`` (a file) is set."""

    name: str
    input_shape: tuple[int, ...]
    module: Any = None
    onnx: Path | None = None
    key: str = ""  # set by :func:`export_units` from the exported file's content
    info: dict[str, Any] = field(default_factory=dict)
    # "cold": timed over copies of itself, none of its memory in cache when an inference starts
    # (``backends.base.cold_copies``); its key has COLD_SUFFIX, so its rounds never mix with the hot ones.
    weights: str = "hot"

    def __post_init__(self) -> None:
        if self.weights not in WEIGHTS:
            raise LatencyLutError(f"{self.name}: weights must be one of {', '.join(WEIGHTS)}, got {self.weights!r}")

    def build_module(self) -> Any:
        if self.module is None:
            raise LatencyLutError(f"{self.name} is an ONNX file; the torch runtime needs a torch module (--module)")
        return self.module.eval()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "input_shape": list(self.input_shape), "key": self.key,
                "source": str(self.onnx) if self.onnx else "torch module", **self.info,
                **({"weights": self.weights} if self.weights != "hot" else {})}


def artifact_for(unit: ModelUnit, fmt: str | None, dtype: str = "fp32") -> Path | None:
    """Export ``unit`` for a backend's format (quantized to ``dtype``) into the artifact cache under its content
    key; sets ``unit.key``.

    ``fmt`` None (the torch runtime builds the module itself): the key comes from the module's ONNX export. An
    ONNX file in int8 is quantized the way a build quantizes its ops (``quantize.quantize_onnx``).
    """
    from latency_lut.export import FORMATS, artifact_path, export_module
    from latency_lut.quantize import quantize_onnx

    want = fmt or "onnx"
    if unit.onnx is not None:
        if want != "onnx":
            raise ExportError(f"{unit.name}: an ONNX file runs on onnxruntime only; for {fmt} give the torch "
                              "module (--module) so that it can be exported")
        if not unit.onnx.is_file():
            raise ExportError(f"ONNX file {unit.onnx} does not exist")
        src, copy = unit.onnx, True
    tmp_dir = artifact_path(_Keyed("model-tmp"), want, dtype=dtype).parent
    tmp = tmp_dir / f".{unit.name.replace('/', '_').replace(':', '_')}.{os.getpid()}{FORMATS[want]}"
    if unit.onnx is not None and dtype != "fp32":
        tmp_dir.mkdir(parents=True, exist_ok=True)
        try:
            quantize_onnx(unit.onnx, tmp, unit.input_shape)
        except Exception as e:  # the quantizer raises anything; the user needs the file and the cause
            tmp.unlink(missing_ok=True)
            raise ExportError(f"{dtype} quantization of {unit.onnx} failed: {type(e).__name__}: "
                              f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from None
        src, copy = tmp, False
    elif unit.onnx is None:
        export_module(unit.build_module(), unit.input_shape, want, tmp, dtype)
        src, copy = tmp, False
    content = MODEL_PREFIX + sha256_file(src)[:16]
    unit.key = content + (COLD_SUFFIX if unit.weights == "cold" else "")
    dest = artifact_path(_Keyed(content), want, dtype=dtype)
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        (shutil.copyfile if copy else shutil.move)(src, tmp)
        os.replace(tmp, dest)
    elif not copy:
        src.unlink(missing_ok=True)
    return dest if fmt else None


@dataclass(frozen=True)
class _Keyed:
    key: str


def export_units(units: Sequence[Any], fmt: str | None, on_done: Callable[[Any], None] | None = None,
                 dtype: str = "fp32") -> dict[str, Path | LatencyLutError | None]:
    """The artifact of every unit (a :class:`ModelUnit` or a space's ``NetworkSpec``) in ``dtype``; a failure is
    returned for that unit, not raised, so one bad model does not end a run."""
    from latency_lut.export import export_spec

    out: dict[str, Path | LatencyLutError | None] = {}
    for u in units:
        try:
            if isinstance(u, ModelUnit):
                art = artifact_for(u, fmt, dtype)
            else:
                art = export_spec(u, fmt, dtype=dtype) if fmt else None
            out[u.key] = art
        except LatencyLutError as e:
            if isinstance(u, ModelUnit) and not u.key:
                u.key = f"{MODEL_PREFIX}unexported-{u.name}"
            out[u.key] = e
        if on_done:
            on_done(u)
    return out


def measure_units(backend: Any, units: Sequence[Any], artifacts: dict[str, Any], protocol: Protocol, *,
                  rounds: int, seed: int = 0, store: Any | None = None, config: Any = None, tag: str = "measure",
                  on_measured: Callable[[Any, int], None] | None = None, watch: Any = None,
                  ) -> dict[str, NetMeasurement]:
    """Every unit ``rounds`` times, interleaved; with a ``store``, each round committed as it is taken and the
    rounds it holds for ``config`` reused (``networks.measure_stored``, the build's per-round path). A drift
    ``watch`` observes its reference between the units."""
    return measure_stored(backend, units, artifacts, protocol, rounds=rounds, seed=seed, store=store, config=config,
                          tag=tag, on_measured=on_measured, watch=watch)
