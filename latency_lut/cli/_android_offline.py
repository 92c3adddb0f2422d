"""``build --bundle`` and ``ingest`` for an Android phone this host cannot reach (backends/android/offline.py)."""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from latency_lut.cli._common import ClickProgress, default_store, echo_json, failed_note, failed_rows, table


def build_bundle(dev: Any, sp: Any, device_arg: str, *, threads: int | None, overrides: dict[str, Any],
                 only: Sequence[str], bundle_path: Path | None, store_path: Path | None, jobs: int, quiet: bool,
                 as_json: bool, dtype: str = "fp32", runtime: str | None = None) -> None:
    """Export the micro-models and write the bundle with its scripts; print what to do next.

    A block that fails to export (or quantize) is named with the converter's reason and left out, as in an online
    build; the manifest records it, so that ingest says why the LUT stays incomplete."""
    from latency_lut.backends import check_runtime
    from latency_lut.backends.android.offline import OfflineAndroid, make_bundle
    from latency_lut.backends.ios.bundle import default_bundle_root
    from latency_lut.build import config_for
    from latency_lut.errors import DeviceError
    from latency_lut.export import artifact_path, export_many
    from latency_lut.measure import Protocol
    from latency_lut.offline.bundles import bundled_specs, select_specs
    from latency_lut.quantize import check_dtype
    from latency_lut.store import Store

    try:
        protocol = Protocol(**{**overrides, "retries": 0})  # the phone runs each model once per script run
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    rt = runtime or dev.runtime
    if rt != OfflineAndroid.runtime:  # the phone script runs benchmark_model, nothing else
        raise DeviceError(f"device {dev.name!r} cannot run runtime {rt!r} offline: its bundle runs on the phone with "
                          "benchmark_model, which runs LiteRT models only; "
                          + ("drop --runtime" if runtime else f"set 'runtime: litert' in {dev.source or dev.name}"))
    check_runtime(dev, rt)
    check_dtype(rt, dtype, dev.name, dev.kind)
    backend = OfflineAndroid.from_device(dev, threads)
    backend.use_dtype(dtype)  # the phone script's flags and the configuration (its settings) carry it
    config = config_for(dev, backend, protocol)
    specs = select_specs(sp, only)
    t0 = time.perf_counter()
    cached = sum(artifact_path(s, "tflite", dtype=dtype).exists() for s in specs)
    bar = ClickProgress(quiet or as_json)
    bar.start("export tflite" + ("" if dtype == "fp32" else f" {dtype}"), len(specs))
    failed: dict[str, str] = {}
    artifacts = export_many(specs, "tflite", jobs=jobs, on_done=lambda s: bar.advance(s.key), dtype=dtype,
                            errors=failed)
    bar.finish()
    bundled = bundled_specs(specs, failed)
    res = make_bundle(bundled, artifacts, backend, config, protocol, {**sp.describe(), "id": sp.id}, not only,
                      root=default_bundle_root(), path=bundle_path, failed=failed)
    with Store(store_path or default_store()) as st:
        have = len(st.completed_keys(config) & set(res.manifest.keys))
    cmd = (f"fbnet-lut ingest --device {shlex.quote(device_arg)} --bundle {shlex.quote(str(res.path))} "
           f"fbnet-lut-{res.manifest.bundle_id}.log")
    summary = {"status": "complete" if have == len(bundled) else "waiting_for_results", "bundle": str(res.path),
               "bundle_id": res.manifest.bundle_id, "bundle_reused": res.reused, "device": dev.name, "dtype": dtype,
               "space": sp.id, "models": len(bundled), "exported": len(bundled) - cached, "cached": cached,
               "results_in_store": have, "total_seconds": round(time.perf_counter() - t0, 2),
               "ingest_command": cmd, "failed": failed}
    if as_json:
        echo_json(summary)
        return
    rows = [[k, v] for k, v in summary.items() if k not in ("status", "ingest_command", "failed")]
    click.echo(table(rows + failed_rows(failed), ["bundle", "value"], right=[False, False]))
    if failed:
        click.echo(f"\n{failed_note(failed)}")
    click.echo(f"\nRun it on the phone (steps in {res.path / 'README.md'}): 'sh run_with_adb.sh' next to it, or "
               f"'sh run_on_phone.sh > LOG' on the phone; then:\n  {cmd}")


def ingest_logs(dev: Any, results: Sequence[Path], bundle_path: Path | None, output: Path | None,
                csv_path: Path | None, store: Path | None, as_json: bool, read: Any) -> None:
    """Read offline Android logs into the store and the LUT."""
    import re

    from latency_lut.backends.android.offline import BundleError, OfflineAndroid, ingest, load_manifest
    from latency_lut.backends.ios.bundle import default_bundle_root, find_bundle
    from latency_lut.build import aggregate
    from latency_lut.lut import check_output_path
    from latency_lut.measure import Protocol
    from latency_lut.paths import default_lut_path
    from latency_lut.spaces import from_description
    from latency_lut.store import Store

    if not results:
        raise click.UsageError("give at least one LOG file")
    sources = [read(p) for p in results]
    if bundle_path is None:
        ids = {m for s in sources for m in re.findall(r"Benchmark name: \[fbnet-lut/([0-9a-f]{16})/", s.text)}
        if len(ids) != 1:
            raise BundleError(f"{'no' if not ids else len(ids)} fbnet-lut bundle(s) named in "
                              f"{', '.join(s.name for s in sources)}; pass the bundle folder with --bundle DIR")
        bundle_path = find_bundle(ids.pop(), [default_bundle_root()])
    m = load_manifest(bundle_path)
    if m.device != dev.name:
        raise BundleError(f"bundle {m.bundle_id} ({m.path}) was made for device {m.device!r}, not {dev.name!r}")
    space = from_description(m.space, str(m.path))
    out = check_output_path(output or default_lut_path(dev.name, m.runtime, space.id,
                                                       str(m.settings.get("dtype", "fp32"))))
    backend = OfflineAndroid.from_device(dev, m.threads)
    with Store(store or default_store()) as st:
        rep = ingest([(s.name, s.text) for s in sources], m, st, Protocol.from_dict(m.protocol).noise_threshold)
        lut = aggregate(st, m.config(), space, dev, backend)
    lut.save(out)
    if csv_path:
        lut.to_csv(csv_path)
    complete = lut.header["complete"]
    summary = {"bundle": str(m.path), "bundle_id": m.bundle_id, "sources": rep.sources,
               "results": len(rep.results), "added": rep.added, "already_ingested": rep.duplicates,
               "replaced": rep.replaced, "repeated": rep.repeated, "failed": rep.failed, "other_runs": rep.other,
               "flagged": rep.flagged, "missing": rep.missing, "lut": str(out), "lut_entries": len(lut),
               "complete": complete, "export_failed": m.failed}
    if as_json:
        echo_json(summary)
        return
    rows = [["bundle", f"{m.path} ({m.bundle_id})"], ["results read", f"{len(rep.results)} from {len(sources)} "
                                                                       "source(s)"],
            ["added", len(rep.added)], ["already ingested", len(rep.duplicates)]]
    for label, keys in (("re-measured", rep.replaced), ("run several times (last kept)", rep.repeated),
                        ("no result", sorted(rep.failed)), ("flagged noisy", rep.flagged)):
        if keys:
            rows.append([label, f"{len(keys)}: {', '.join(keys[:4])}" + (" ..." if len(keys) > 4 else "")])
    rows.append(["missing", f"{len(rep.missing)} of {len(m.models)}"])
    rows.append(["lut", f"{out} ({len(lut)} entries, {'complete' if complete else 'INCOMPLETE'})"])
    click.echo(table(rows + failed_rows(m.failed, "not bundled"), ["ingest", "value"], right=[False, False]))
    for key, why in list(rep.failed.items())[:5]:
        click.echo(f"no result for {key}: {why}", err=True)
    if m.failed:
        click.echo(f"\n{failed_note(m.failed)}")
