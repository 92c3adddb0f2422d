"""fbnet-lut build"""

from __future__ import annotations

import time
from pathlib import Path

import click

from latency_lut.cli._common import (
    COUNT,
    DEFAULT_PROFILES,
    JOBS,
    RESOLUTION,
    SECONDS,
    THREADS,
    WIDTH,
    ClickProgress,
    FiniteFloat,
    default_store,
    echo_json,
    store_option,
    table,
)


def default_lut_path(device: str, runtime: str, space_id: str) -> Path:
    """FBNet's LUTs keep their original names (profiles/local-onnxruntime-224.json); other spaces add theirs."""
    tail = space_id.split("-", 1)[1] if space_id.startswith("fbnet-") else space_id
    return DEFAULT_PROFILES / f"{device}-{runtime}-{tail}.json"


@click.command()
@click.option("--device", "-d", default="local", show_default=True,
              help="Device name (see 'fbnet-lut devices') or path to a descriptor .yaml file.")
@click.option("--runtime", "-r", default=None, help="onnxruntime, litert or torch [default: the device's].")
@click.option("--space", default="fbnet", show_default=True, metavar="NAME|FILE.yaml",
              help="Search space: a built-in name (fbnet, proxylessnas, ofa_mbv3, mobilenetv3) or a space .yaml file.")
@click.option("--resolution", default=None, type=RESOLUTION,
              help="Input resolution of the network [default: the space's].")
@click.option("--width", default=None, type=WIDTH, help="Channel width multiplier [default: the space's].")
@click.option("--threads", "-t", default=None, type=THREADS,
              help="Runtime threads [default: the device's, 1 for local].")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="LUT file to write [default: profiles/DEVICE-RUNTIME-RESOLUTION.json].")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the LUT as CSV.")
@store_option
@click.option("--warmup", default=None, type=COUNT, help="Warmup runs per op [default: 5].")
@click.option("--runs", default=None, type=click.IntRange(3, COUNT.max),
              help="Minimum timed runs per op [default: 30].")
@click.option("--min-seconds", default=None, type=SECONDS, help="Minimum timed seconds per op [default: 0.1].")
@click.option("--noise-threshold", default=None, type=FiniteFloat(0, 10),
              help="Robust CV above which an op is re-measured, then flagged [default: 0.10].")
@click.option("--retries", default=None, type=click.IntRange(0, 20), help="Re-measurements of a noisy op [default: 2].")
@click.option("--clock", type=click.Choice(["wall", "thread_cpu"]), default=None,
              help="wall (default) or thread_cpu: CPU time of the benchmark thread, immune to preemption on a busy "
                   "shared host (local runtimes at 1 thread only).")
@click.option("--jobs", "-j", default=1, show_default=True, type=JOBS,
              help="Parallel export processes (measurement is always serial).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the build summary as JSON.")
@click.option("--bundle", "bundle_path", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="iOS devices, and Android phones measured offline: bundle folder to write "
                   "[default: profiles/bundles/DEVICE-SPACE-ID].")
@click.option("--only", multiple=True, hidden=True, help="iOS devices and Android bundles: only these op keys.")
def build(device: str, runtime: str | None, space: str, resolution: int | None, width: float | None,
          threads: int | None, output: Path | None, csv_path: Path | None, store: Path | None,
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
      fbnet-lut build --resolution 96 --width 0.35 -o fbnet96.json
      fbnet-lut build --space ofa_mbv3 --width 1.2 --resolution 160
      fbnet-lut build --space my_space.yaml --resolution 64       # a user's space (embedded in the LUT)
      fbnet-lut build --device iphonex                 # iPhone: a bundle for the app, then 'fbnet-lut ingest'
    """
    from latency_lut.backends import create_backend
    from latency_lut.build import build_lut
    from latency_lut.devices import get_device
    from latency_lut.measure import Protocol
    from latency_lut.outputs import check_outputs
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
    if dev.kind == "android" and bundle_path is not None:  # a phone this host cannot reach: bundle out, log in
        from latency_lut.cli._android_offline import build_bundle

        return build_bundle(dev, sp, device, threads=threads, overrides=overrides, only=only,
                            bundle_path=bundle_path, store_path=store, jobs=jobs, quiet=quiet, as_json=as_json)
    try:
        protocol = Protocol(**overrides)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    store = store or default_store()
    out = check_outputs({"-o": output or default_lut_path(dev.name, runtime or dev.runtime, sp.id),
                         "--csv": csv_path}, store=store)["-o"]
    backend = create_backend(dev, runtime, threads=threads)
    if protocol.clock == "thread_cpu" and (dev.kind != "local" or backend.threads != 1):
        backend.close()
        raise click.BadParameter("--clock thread_cpu needs a local device at 1 thread", param_hint="--clock")
    t0 = time.perf_counter()
    try:
        with Store(store) as st:
            res = build_lut(sp, dev, backend, st, protocol, jobs=jobs, progress=ClickProgress(quiet or as_json))
    finally:
        backend.close()
    res.lut.save(out)
    if csv_path:
        res.lut.to_csv(csv_path)
    total = time.perf_counter() - t0
    summary = {
        "lut": str(out), "device": dev.name, "runtime": backend.runtime, "space": sp.id, "entries": len(res.lut),
        "measured": res.measured, "reused": res.reused, "flagged": res.flagged,
        "export_seconds": round(res.export_seconds, 2), "measure_seconds": round(res.measure_seconds, 2),
        "total_seconds": round(total, 2), "complete": res.lut.header["complete"],
    }
    if as_json:
        echo_json(summary)
        return
    rows = [[k, ", ".join(v) if isinstance(v, list) else v] for k, v in summary.items() if k != "flagged"]
    rows.append(["flagged", f"{len(res.flagged)} noisy op(s)" + (": " + ", ".join(res.flagged[:5]) if res.flagged
                                                                  else "")])
    click.echo(table(rows, ["build", "value"], right=[False, False]))
