"""fbnet-lut build"""

from __future__ import annotations

import time
from pathlib import Path

import click

from latency_lut.cli._common import (
    DEFAULT_PROFILES,
    ClickProgress,
    default_store,
    dtype_option,
    echo_json,
    store_option,
    table,
)


def default_lut_path(device: str, runtime: str, space_id: str, dtype: str = "fp32") -> Path:
    """FBNet's LUTs keep their original names (profiles/local-onnxruntime-224.json); other spaces add theirs,
    other dtypes theirs (profiles/local-litert-224-int8.json)."""
    tail = space_id.split("-", 1)[1] if space_id.startswith("fbnet-") else space_id
    return DEFAULT_PROFILES / f"{device}-{runtime}-{tail}{'' if dtype == 'fp32' else '-' + dtype}.json"


@click.command()
@click.option("--device", "-d", default="local", show_default=True,
              help="Device name (see 'fbnet-lut devices') or path to a descriptor .yaml file.")
@click.option("--runtime", "-r", default=None, help="onnxruntime, litert or torch [default: the device's].")
@click.option("--space", default="fbnet", show_default=True, metavar="NAME|FILE.yaml",
              help="Search space: a built-in name (fbnet, proxylessnas, ofa_mbv3, mobilenetv3) or a space .yaml file.")
@click.option("--resolution", default=None, type=int, help="Input resolution of the network [default: the space's].")
@click.option("--width", default=None, type=float, help="Channel width multiplier [default: the space's].")
@click.option("--threads", "-t", default=None, type=int, help="Runtime threads [default: the device's, 1 for local].")
@dtype_option("fp32", "Precision of the measured models: int8 (static post-training quantization with synthetic "
                      "calibration data, int8 I/O; ONNX Runtime and LiteRT), fp16 (LiteRT only) or fp32.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="LUT file to write [default: profiles/DEVICE-RUNTIME-RESOLUTION.json].")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the LUT as CSV.")
@store_option
@click.option("--warmup", default=None, type=int, help="Warmup runs per op [default: 5].")
@click.option("--runs", default=None, type=int, help="Minimum timed runs per op [default: 30].")
@click.option("--min-seconds", default=None, type=float, help="Minimum timed seconds per op [default: 0.1].")
@click.option("--noise-threshold", default=None, type=float,
              help="Robust CV above which an op is re-measured, then flagged [default: 0.10].")
@click.option("--retries", default=None, type=int, help="Re-measurements of a noisy op [default: 2].")
@click.option("--clock", type=click.Choice(["wall", "thread_cpu"]), default=None,
              help="wall (default) or thread_cpu: CPU time of the benchmark thread, immune to preemption on a busy "
                   "shared host (local runtimes at 1 thread only).")
@click.option("--jobs", "-j", default=1, show_default=True, type=int,
              help="Parallel export processes (measurement is always serial).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the build summary as JSON.")
@click.option("--bundle", "bundle_path", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="iOS devices: bundle folder to write [default: profiles/bundles/DEVICE-SPACE-ID].")
@click.option("--only", multiple=True, hidden=True, help="iOS devices: bundle only these op keys.")
def build(device: str, runtime: str | None, space: str, resolution: int | None, width: float | None,
          threads: int | None, dtype: str, output: Path | None, csv_path: Path | None, store: Path | None,
          warmup: int | None, runs: int | None,
          min_seconds: float | None, noise_threshold: float | None, retries: int | None, clock: str | None,
          jobs: int, quiet: bool, as_json: bool, bundle_path: Path | None, only: tuple[str, ...]) -> None:
    """Measure every op of a search space on a device and write its LUT.

    Ops are exported (cached by key and exporter version), timed under the measurement protocol, and every raw
    sample is committed to the store as soon as it is taken. Rerunning the same command after an interruption
    measures only what is missing; rerunning it after a finished build measures nothing.

    \b
    Examples:
      fbnet-lut build                                  # local CPU, ONNX Runtime, 224x224
      fbnet-lut build --runtime litert --jobs 2        # LiteRT with XNNPACK, 2 export processes
      fbnet-lut build --runtime litert --dtype int8    # int8 LUT (full-integer PTQ) -> ...-224-int8.json
      fbnet-lut build --resolution 96 --width 0.35 -o fbnet96.json
      fbnet-lut build --space ofa_mbv3 --width 1.2 --resolution 160
      fbnet-lut build --space my_space.yaml --resolution 64       # a user's space (embedded in the LUT)
      fbnet-lut build --device iphonex                 # iPhone: a bundle for the app, then 'fbnet-lut ingest'
    """
    from latency_lut.backends import create_backend
    from latency_lut.build import build_lut
    from latency_lut.devices import get_device
    from latency_lut.lut import check_output_path
    from latency_lut.measure import Protocol
    from latency_lut.spaces import get_space
    from latency_lut.store import Store

    dev = get_device(device)
    sp = get_space(space, resolution, width)
    overrides = {k: v for k, v in dict(warmup=warmup, runs=runs, min_seconds=min_seconds, clock=clock,
                                       noise_threshold=noise_threshold, retries=retries).items() if v is not None}
    if dev.kind == "ios":  # the phone runs the models itself: bundle out, results in (latency_lut/ios)
        from latency_lut.ios.flow import ios_bundle_flow

        return ios_bundle_flow(dev, sp, runtime=runtime, threads=threads, overrides=overrides, only=only,
                               bundle_path=bundle_path, store_path=store, lut_path=output, csv_path=csv_path,
                               jobs=jobs, quiet=quiet, as_json=as_json)
    try:
        protocol = Protocol(**overrides)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    backend = create_backend(dev, runtime, dtype, threads=threads)  # a dtype the runtime lacks: error, no output
    try:
        out = check_output_path(output or default_lut_path(dev.name, backend.runtime, sp.id, dtype))
        if csv_path:
            check_output_path(csv_path)
    except BaseException:
        backend.close()
        raise
    if protocol.clock == "thread_cpu" and (dev.kind != "local" or backend.threads != 1):
        backend.close()
        raise click.BadParameter("--clock thread_cpu needs a local device at 1 thread", param_hint="--clock")
    t0 = time.perf_counter()
    try:
        with Store(store or default_store()) as st:
            res = build_lut(sp, dev, backend, st, protocol, jobs=jobs, progress=ClickProgress(quiet or as_json))
    finally:
        backend.close()
    res.lut.save(out)
    if csv_path:
        res.lut.to_csv(csv_path)
    total = time.perf_counter() - t0
    summary = {
        "lut": str(out), "device": dev.name, "runtime": backend.runtime, "dtype": dtype, "space": sp.id,
        "entries": len(res.lut),
        "measured": res.measured, "reused": res.reused, "flagged": res.flagged,
        "export_seconds": round(res.export_seconds, 2), "measure_seconds": round(res.measure_seconds, 2),
        "total_seconds": round(total, 2), "complete": res.lut.header["complete"], "failed": res.failed,
    }
    if as_json:
        echo_json(summary)
        return
    rows = [[k, ", ".join(v) if isinstance(v, list) else v] for k, v in summary.items()
            if k not in ("flagged", "failed")]
    rows += [[f"failed {key}", why] for key, why in res.failed.items()]
    rows.append(["flagged", f"{len(res.flagged)} noisy op(s)" + (": " + ", ".join(res.flagged[:5]) if res.flagged
                                                                  else "")])
    click.echo(table(rows, ["build", "value"], right=[False, False]))
