"""fbnet-lut measure"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from latency_lut.cli._common import (
    COUNT,
    SECONDS,
    THREADS,
    ClickProgress,
    check_weights,
    default_store,
    dtype_option,
    echo_json,
    parse_shape,
    store_option,
    table,
    weights_option,
)


def model_units(modules: tuple[str, ...], onnx_files: tuple[Path, ...], shape: tuple[int, ...] | None,
                resolution: int = 224, weights: str = "hot") -> list[Any]:
    """The models named on a command line, as measurable units (torch modules loaded, shapes inferred)."""
    from latency_lut.models import ModelUnit, infer_input_shape, load_model

    units: list[Any] = []
    for target in modules:
        m = load_model(target)
        units.append(ModelUnit(target, shape or infer_input_shape(m, resolution), module=m, weights=weights))
    for path in onnx_files:
        units.append(ModelUnit(path.name, shape or _onnx_shape(path), onnx=path, weights=weights))
    return units


def _onnx_shape(path: Path) -> tuple[int, ...]:
    from latency_lut.decompose import ModelError

    try:
        import onnx

        inp = [i for i in onnx.load(str(path), load_external_data=False).graph.input][0]
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in inp.type.tensor_type.shape.dim]
    except FileNotFoundError:
        raise ModelError(f"ONNX file {path} does not exist") from None
    except Exception as e:
        raise ModelError(f"cannot read ONNX file {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    return tuple(int(d) for d in dims)


@click.command()
@click.option("--device", "-d", default="local", show_default=True,
              help="Device name (see 'fbnet-lut devices') or path to a descriptor .yaml file.")
@click.option("--runtime", "-r", default=None, help="onnxruntime, litert or torch [default: the device's].")
@click.option("--module", "-m", "modules", multiple=True, metavar="PKG.MOD:FACTORY",
              help="A torch nn.Module factory (called without arguments) or module object: pkg.mod:name or "
                   "path/to/file.py:name. Repeat for several models.")
@click.option("--onnx", "onnx_files", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="An ONNX model file (onnxruntime only). Repeat for several.")
@click.option("--arch", "-a", "archs", multiple=True,
              help="An architecture of the FBNet space (fbnet_a, ... or 22 candidates) at the input resolution.")
@click.option("--input-shape", default=None, metavar="N,C,H,W",
              help="Input shape [default: 1,C,224,224 with C the first conv's input channels; an ONNX file's own].")
@click.option("--rounds", default=5, show_default=True, type=click.IntRange(1, 1000),
              help="Interleaved rounds; a model's latency is the median of its round medians.")
@click.option("--threads", "-t", default=None, type=THREADS, help="Runtime threads [default: the device's].")
@dtype_option("fp32", "Precision of the models: int8 (static post-training quantization with synthetic calibration "
                      "data and 8-bit I/O, as 'build --dtype int8' quantizes its ops; ONNX Runtime and LiteRT) or "
                      "fp32.")
@click.option("--warmup", default=None, type=COUNT, help="Warmup runs per round [default: 5].")
@click.option("--runs", default=None, type=click.IntRange(3, COUNT.max),
              help="Minimum timed runs per round [default: 30].")
@click.option("--min-seconds", default=None, type=SECONDS, help="Minimum timed seconds per round [default: 0.1].")
@weights_option
@store_option
@click.option("--bundle", "bundle_path", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="iOS devices: bundle folder to write [default: profiles/bundles/DEVICE-models-ID].")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def measure(device: str, runtime: str | None, modules: tuple[str, ...], onnx_files: tuple[Path, ...],
            archs: tuple[str, ...], input_shape: str | None, rounds: int, threads: int | None, dtype: str,
            warmup: int | None,
            runs: int | None, min_seconds: float | None, weights: str, store: Path | None, bundle_path: Path | None,
            quiet: bool, as_json: bool) -> None:
    """Measure whole models end to end on a device: any torch module, ONNX file or architecture of the space.

    Each model is exported for the device's runtime (ONNX, or TFLite for LiteRT and phones), stored in the artifact
    cache under a key derived from the exported file's content (model-<sha256>), and measured with the build's
    protocol in interleaved rounds. Every round goes into the store under that key. On an Android phone the
    .tflite is pushed and run by benchmark_model; for an iPhone a bundle of the models is written, to be run in
    the benchmark app and read back with 'fbnet-lut ingest'.

    \b
    Examples:
      fbnet-lut measure --module geffnet:mobilenetv3_large_100 --rounds 7
      fbnet-lut measure -r litert -m mymodels.py:net -m geffnet:efficientnet_b0 --json
      fbnet-lut measure --onnx model.onnx --device local
      fbnet-lut measure -d pixel -a fbnet_c
      fbnet-lut measure -r litert --dtype int8 -a fbnet_a -a fbnet_c   # full-integer int8 models
      fbnet-lut measure -m geffnet:mobilenetv3_small_100 --weights cold   # none of it in cache
    """
    from latency_lut.backends import create_backend
    from latency_lut.build import config_for
    from latency_lut.devices import get_device
    from latency_lut.measure import Protocol
    from latency_lut.models import ModelUnit, export_units, measure_units
    from latency_lut.networks import NetworkSpec
    from latency_lut.outputs import check_outputs
    from latency_lut.spaces import get_space
    from latency_lut.store import Store

    if not (modules or onnx_files or archs):
        raise click.UsageError("give at least one model: --module, --onnx or --arch")
    shape = parse_shape(input_shape) if input_shape else None
    st_path = store or default_store()
    # the store (and an iPhone's bundle) are written; neither may be one of the models read
    check_outputs({"--bundle": bundle_path}, inputs={f"--onnx {p}": p for p in onnx_files}, store=st_path)
    dev = get_device(device)
    overrides = {k: v for k, v in dict(warmup=warmup, runs=runs, min_seconds=min_seconds).items() if v is not None}
    units = model_units(modules, onnx_files, shape, weights=weights)
    if archs:
        space = get_space("fbnet", shape[2] if shape else 224, 1.0)
        nets = [NetworkSpec(space, space.parse_arch(a), a) for a in archs]
        # A cold architecture is a model like any other (its key from its content, with the -cold suffix).
        units += nets if weights == "hot" else [ModelUnit(n.name, n.input_shape, module=n.build_module(),
                                                          weights=weights) for n in nets]
    check_weights(weights, dev, runtime)
    if dev.kind == "ios":  # the phone runs the models itself: a bundle out, its log back in with 'ingest'
        from latency_lut.offline.bundles import build_models_bundle, ingest_command

        if runtime not in (None, dev.runtime):
            raise click.UsageError(f"device {dev.name!r} runs {dev.runtime} in the iOS benchmark app; drop --runtime")
        from latency_lut.quantize import check_dtype

        check_dtype(dev.runtime, dtype, dev.name, dev.kind)
        b = build_models_bundle(units, dev, threads=threads, protocol_overrides=overrides, bundle_path=bundle_path,
                                dtype=dtype)
        cmd = ingest_command(dev, b.path)
        if as_json:
            echo_json({"device": dev.name, "bundle": str(b.path), "bundle_id": b.manifest.bundle_id,
                       "models": [{"model": u.name, "key": u.key} for u in units], "ingest_command": cmd})
            return
        click.echo(table([[u.name, u.key] for u in units], ["model", "key"]))
        click.echo(f"\nBundle of {len(units)} model(s): {b.path}. Run it in the benchmark app (steps in "
                   f"{b.path / 'README.md'}), save the console output, then:\n  {cmd}")
        return
    try:
        protocol = Protocol(**overrides)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    backend = create_backend(dev, runtime, dtype, threads=threads)  # a dtype the runtime lacks: error naming both
    progress = ClickProgress(quiet or as_json)
    try:
        progress.start(f"export {backend.artifact_format or 'onnx'}{'' if dtype == 'fp32' else ' ' + dtype}",
                       len(units))
        arts = export_units(units, backend.artifact_format, on_done=lambda u: progress.advance(u.name),
                            dtype=dtype)
        progress.finish()
        progress.start(f"measure x{rounds}", len(units) * rounds)
        with Store(st_path) as st:  # each round stored as it is taken: a killed measure resumes
            res = measure_units(backend, units, arts, protocol, rounds=rounds, store=st,
                                config=config_for(dev, backend, protocol),
                                on_measured=lambda u, r: progress.advance(u.name))
        progress.finish()
    finally:
        backend.close()
    rows = []
    for u in units:
        m = res[u.key]
        rows.append({"model": u.name, "key": u.key, "input_shape": list(u.input_shape), "weights": weights,
                     "median_ms": m.median_ms if m.ok else None, "round_ms": m.round_medians if m.ok else [],
                     "noise": m.noise if m.ok else None, "error": m.error})
    if as_json:
        echo_json({"device": dev.name, "runtime": backend.runtime, "dtype": dtype, "threads": backend.threads,
                   "protocol": protocol.to_dict(), "rounds": rounds, "store": str(st_path), "models": rows})
        return
    body = [[r["model"], r["key"], "x".join(str(v) for v in r["input_shape"]), r["median_ms"] or "",
             "" if r["noise"] is None else f"{100 * r['noise']:.1f}%", (r["error"] or "")[:60]] for r in rows]
    click.echo(table(body, ["model", "key", "input", "median ms", "noise", "error"]))
    click.echo(f"({dev.name}, {backend.runtime} {backend.runtime_version()} {dtype}, {backend.threads} thread(s), "
               f"{rounds} interleaved round(s); stored in {st_path})")
    failed = [r for r in rows if r["error"]]
    if failed and len(failed) == len(rows):
        from latency_lut.errors import LatencyLutError

        raise LatencyLutError(f"no model could be measured: {failed[0]['model']}: {failed[0]['error']}")

