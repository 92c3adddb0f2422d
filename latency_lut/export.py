"""Exporters: op spec or torch module -> ONNX (torch.onnx) or TFLite (litert-torch, NHWC I/O), cached on disk.

Each format has an fp32 and an int8 path (``dtype``; see ``latency_lut.quantize``); an int8 artifact is cached
under its ``-int8`` key, beside a quantizer identity in its folder name.

Artifacts are content-addressed by op key and exporter identity (exporter, its version, its options), so a second
build exports nothing and an upgrade of torch or litert-torch re-exports into a fresh folder. Files are written to
a temporary name and renamed, so a killed export never leaves a truncated artifact in the cache.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latency_lut.errors import ExportError
from latency_lut.ops import OpSpec
from latency_lut.quantize import fp16_tflite, quantize_onnx, quantize_tflite, quantizer_info

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

FORMATS = {"onnx": ".onnx", "tflite": ".tflite"}
ONNX_OPSET = 17
_RECIPE = "v3"  # bump when the way a module is built or exported changes


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "missing"


def exporter_info(fmt: str, dtype: str = "fp32") -> dict[str, Any]:
    """Identity of the exporter for ``fmt`` (and its quantizer, for ``dtype`` other than fp32); part of the cache
    path and of the store's settings."""
    if fmt == "onnx":
        info = {"format": "onnx", "exporter": "torch.onnx", "torch": _version("torch"), "opset": ONNX_OPSET,
                "recipe": _RECIPE}
    elif fmt == "tflite":
        info = {"format": "tflite", "exporter": "litert-torch", "litert_torch": _version("litert-torch"),
                "torch": _version("torch"), "layout": "nhwc", "recipe": _RECIPE}
    else:
        raise ExportError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    return {**info, **quantizer_info(fmt, dtype)}


def exporter_id(fmt: str, dtype: str = "fp32") -> str:
    info = exporter_info(fmt, dtype)
    return "-".join(f"{v}" for k, v in info.items() if k not in ("format",)).replace("/", "_").replace("+", "_")


def cache_dir() -> Path:
    """Artifact cache: $FBNET_LUT_CACHE, else $XDG_CACHE_HOME/fbnet-lut, else ~/.cache/fbnet-lut."""
    if os.environ.get("FBNET_LUT_CACHE"):
        return Path(os.environ["FBNET_LUT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fbnet-lut"


def artifact_path(spec: OpSpec, fmt: str, root: Path | None = None, dtype: str = "fp32") -> Path:
    key = spec.key if dtype == "fp32" else f"{spec.key}-{dtype}"  # the key grammar's dtype suffix
    return (root or cache_dir()) / "artifacts" / exporter_id(fmt, dtype) / f"{key}{FORMATS[fmt]}"


# ---- exporting one module ---------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_native_output() -> Iterator[Path]:
    """Send C++ logging (absl, MLIR) of the converters to a temp file instead of the user's terminal."""
    log = Path(tempfile.mkstemp(prefix="fbnet-lut-export-", suffix=".log")[1])
    saved = [os.dup(1), os.dup(2)]
    fd = os.open(log, os.O_WRONLY | os.O_TRUNC)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield log
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (*saved, fd):
            os.close(f)


def export_module(module: Any, input_shape: Sequence[int], fmt: str, path: str | Path, dtype: str = "fp32",
                  fp32_onnx: Path | None = None) -> Path:
    """Export a torch module taking one NCHW (or NC) float tensor of ``input_shape`` to ``path``.

    ``dtype`` int8 quantizes it (int8 I/O), fp16 (TFLite) casts its weights to fp16; ``fp32_onnx`` is its fp32
    export in ``fmt`` when one exists already (ONNX int8 and TFLite fp16 start from it).
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    module = module.eval()
    sample = torch.randn(*input_shape)
    # Tracing on one thread: on a busy 2-core host torch's intra-op threads spin against each other and a whole
    # network's export took 6-9 s instead of 1.5 s (parallel exports are separate processes, see export_many).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            if fmt == "onnx" and dtype == "int8":
                _export_onnx_int8(module, sample, tmp, fp32_onnx)
            elif fmt == "onnx" and dtype == "fp32":
                with _quiet_native_output():  # a failing export prints its advice before raising
                    _export_onnx(module, sample, tmp)
            elif fmt == "tflite" and dtype == "fp16":
                _export_tflite_fp16(module, sample, tmp, fp32_onnx)
            elif fmt == "tflite" and dtype in ("fp32", "int8"):
                _export_tflite(module, sample, tmp, dtype)
            else:
                raise ExportError(f"no {dtype} export to {fmt!r}")
        os.replace(tmp, path)
    except Exception as e:  # converters raise anything; the user needs the model, the layer and the cause
        what = "quantization" if dtype != "fp32" else "export"
        where = failing_layer(module, sample, fmt, tmp) if dtype == "fp32" else None
        at = f" at layer {where}" if where else ""
        cause = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, ExportError) and not where:
            raise
        raise ExportError(f"{what} of {path.stem} to {fmt} failed{at}: {type(e).__name__}: {cause}") from e
    finally:
        torch.set_num_threads(threads)
        tmp.unlink(missing_ok=True)
    return path


def failing_layer(module: Any, sample: Any, fmt: str, tmp: Path, budget: int = 24) -> str:
    """The deepest submodule that fails to export on its own (its name and type), found by exporting children
    with the inputs they saw in one eager run; "" when no single layer is to blame (or for whole-model formats
    where trying costs too much)."""
    import torch

    seen: dict[str, Any] = {}
    names = {m: n for n, m in module.named_modules()}
    hooks = [m.register_forward_pre_hook(lambda m, args: seen.setdefault(names[m], args))
             for m in module.modules() if m is not module]
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module(sample)
    except Exception:
        return ""
    finally:
        for h in hooks:
            h.remove()
    if fmt != "onnx":
        budget = min(budget, 6)  # a TFLite conversion takes seconds
    node, name = module, ""
    while budget > 0:
        blamed = None
        for child_name, child in node.named_children():
            full = f"{name}.{child_name}" if name else child_name
            args = seen.get(full)
            if not args or len(args) != 1 or not isinstance(args[0], torch.Tensor):
                continue
            budget -= 1
            try:
                with warnings.catch_warnings(), torch.no_grad(), _quiet_native_output():
                    warnings.simplefilter("ignore")
                    (_export_onnx if fmt == "onnx" else _export_tflite)(child.eval(), args[0], tmp)
            except Exception:
                blamed = (full, child)
                break
            if budget <= 0:
                break
        if blamed is None:
            break
        name, node = blamed
    return f"{name} ({type(node).__name__})" if name else ""


def _export_onnx(module: Any, sample: Any, out: Path) -> None:
    import torch

    kwargs = dict(input_names=["input"], output_names=["output"], opset_version=ONNX_OPSET)
    try:
        # The TorchScript exporter is ~30x faster than dynamo for these small graphs and gives the same ops.
        torch.onnx.export(module, (sample,), str(out), dynamo=False, **kwargs)
    except TypeError:  # a torch without the dynamo switch
        torch.onnx.export(module, (sample,), str(out), **kwargs)
    except Exception as first:
        # What TorchScript cannot export (a custom autograd Function, as in geffnet's memory-efficient
        # activations), torch.export traces through; its failure is reported as the first one.
        try:
            torch.onnx.export(module, (sample,), str(out), dynamo=True, **{**kwargs, "opset_version": 18})
        except Exception:
            raise first from None


def _export_onnx_int8(module: Any, sample: Any, out: Path, fp32: Path | None) -> None:
    if fp32 is None or not fp32.exists():
        fp32 = out.with_name(f"{out.name}.fp32.onnx")
        try:
            _export_onnx(module, sample, fp32)
            quantize_onnx(fp32, out, tuple(sample.shape))
        finally:
            fp32.unlink(missing_ok=True)
    else:
        quantize_onnx(fp32, out, tuple(sample.shape))


def _export_tflite(module: Any, sample: Any, out: Path, dtype: str = "fp32") -> None:
    with _quiet_native_output():  # litert-torch's imports print torchao and absl chatter
        import litert_torch
        from litert_torch import _config

    _config.config.show_progress = False
    # NHWC I/O for 4-D tensors: otherwise every micro-model carries two layout TRANSPOSE ops that a deployed
    # NHWC network never runs.
    from latency_lut.blocks import use_channels_last

    use_channels_last(module)
    args = [0] if sample.dim() == 4 else []
    with torch_no_grad():
        probe = module(sample)
    outs = [0] if probe.dim() == 4 else []
    wrapped = litert_torch.to_channel_last_io(module, args=args, outputs=outs) if (args or outs) else module
    nhwc = sample.permute(0, 2, 3, 1).contiguous() if args else sample
    with _quiet_native_output() as log:
        try:
            if dtype == "int8":
                quantize_tflite(module, sample, out, args, outs)
            else:
                litert_torch.convert(wrapped.eval(), (nhwc,)).export(str(out))
        except Exception as e:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise ExportError(f"litert-torch conversion failed: {e}" + (f"; {' | '.join(tail)}" if tail else "")) from e
        finally:
            log.unlink(missing_ok=True)


def _export_tflite_fp16(module: Any, sample: Any, out: Path, fp32: Path | None) -> None:
    made = fp32 is None or not fp32.exists()
    if made:
        fp32 = out.with_name(f"{out.name}.fp32.tflite")
        _export_tflite(module, sample, fp32)
    try:
        with _quiet_native_output():  # the quantizer prints a size summary
            fp16_tflite(fp32, out)
    finally:
        if made:
            fp32.unlink(missing_ok=True)


@contextlib.contextmanager
def torch_no_grad() -> Iterator[None]:
    import torch

    with torch.no_grad():
        yield


# ---- the cache --------------------------------------------------------------------------------------------
def export_spec(spec: OpSpec, fmt: str, root: Path | None = None, dtype: str = "fp32") -> Path:
    """The artifact of one op spec in ``dtype``, exported (and quantized) on first use."""
    path = artifact_path(spec, fmt, root, dtype)
    if not path.exists():
        # ONNX int8 and TFLite fp16 start from the cached fp32 export; a TFLite int8 model is converted from the
        # torch module
        fp32 = export_spec(spec, fmt, root) if (fmt == "onnx" and dtype != "fp32") or dtype == "fp16" else None
        export_module(spec.build_module(), spec.input_shape, fmt, path, dtype, fp32)
    return path


def _init_worker(parent: int) -> None:
    """Export workers are silent (converters print import chatter; failures come back as exceptions) and end
    when the build is killed, instead of converting on for nobody (Linux only)."""
    import ctypes
    import signal
    import sys

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except OSError:
            pass
    if os.getppid() != parent:  # killed while this worker was starting, before the signal was armed
        os._exit(1)


def export_pool(jobs: int) -> ProcessPoolExecutor:
    """The one pool of export processes (op specs here, whole networks in ``networks``): spawned, so no torch
    state is forked; silent; and each worker ends with the process that started it (see ``_init_worker``)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                               initargs=(os.getpid(),))


def _export_worker(args: tuple[str, str, str | None, str]) -> str:
    key, fmt, root, dtype = args
    return str(export_spec(OpSpec.from_key(key), fmt, Path(root) if root else None, dtype))


def export_jobs(fmt: str | None, n: int) -> int:
    """Export processes worth starting for ``n`` missing artifacts of ``fmt``: one per CPU for TFLite, whose
    converter takes seconds per unit (1.3 s for a bare ReLU, 3 s of CPU for an MBConv with squeeze-excite here), so
    a model's 20 missing units convert in about half the time on 2 cores; one (in process) for ONNX, whose export
    takes a tenth of the seconds a spawned worker needs to import torch."""
    if fmt != "tflite" or n < 2:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(n, cpus))


def export_many(
    specs: Iterable[OpSpec],
    fmt: str,
    *,
    jobs: int = 1,
    root: Path | None = None,
    on_done: Callable[[OpSpec], None] | None = None,
    dtype: str = "fp32",
    errors: dict[str, str] | None = None,
) -> dict[str, Path]:
    """Export every spec that is not cached yet; returns key -> artifact path for all of them.

    With ``jobs > 1`` the exports run in separate processes (litert-torch takes seconds per model). With
    ``errors``, a spec that fails to export (or quantize) is recorded there (key -> the converter's reason) and
    left out of the result, and the others go on; without it the first failure raises.
    """

    def attempt(spec: OpSpec, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except ExportError as e:
            if errors is None:
                raise
            errors[spec.key] = str(e)
            del out[spec.key]
        if on_done:
            on_done(spec)

    specs = list(specs)
    out = {s.key: artifact_path(s, fmt, root, dtype) for s in specs}
    todo = [s for s in specs if not out[s.key].exists()]
    for s in specs:
        if s not in todo and on_done:
            on_done(s)
    if jobs <= 1 or len(todo) <= 1:
        for s in todo:
            attempt(s, partial(export_spec, s, fmt, root, dtype))
        return out
    from concurrent.futures import as_completed

    with export_pool(jobs) as pool:
        futs = {pool.submit(_export_worker, (s.key, fmt, str(root) if root else None, dtype)): s for s in todo}
        for fut in as_completed(futs):
            attempt(futs[fut], fut.result)
    return out
