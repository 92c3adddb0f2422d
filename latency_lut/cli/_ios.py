"""The build command's iOS branch: export the bundle, then print what was bundled and what to do next."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from latency_lut.cli._common import ClickProgress, default_store, echo_json, failed_note, failed_rows, table
from latency_lut.devices import Device
from latency_lut.errors import DeviceError
from latency_lut.offline.bundles import IOS_CALIBRATION_MODELS, build_bundle, ingest_command
from latency_lut.outputs import check_outputs
from latency_lut.paths import default_lut_path
from latency_lut.quantize import check_dtype
from latency_lut.spaces import SearchSpace
from latency_lut.store import Store


def ios_bundle_flow(device: Device, space: SearchSpace, *, runtime: str | None, threads: int | None,
                    overrides: dict[str, Any], only: Sequence[str], bundle_path: Path | None, store_path: Path | None,
                    lut_path: Path | None, csv_path: Path | None, jobs: int, quiet: bool, as_json: bool,
                    calibration_models: int | None = None, dtype: str = "fp32") -> None:
    """The build command's iOS branch: print what was bundled and what to do next."""
    if runtime not in (None, device.runtime):
        raise DeviceError(f"device {device.name!r} runs {device.runtime} in the iOS benchmark app; drop --runtime")
    check_dtype(device.runtime, dtype, device.name, device.kind)
    store_path = store_path or default_store()
    out = check_outputs({"-o": lut_path or default_lut_path(device.name, device.runtime, space.id, dtype),
                         "--csv": csv_path}, store=store_path)["-o"]
    t0 = time.perf_counter()
    with Store(store_path) as st:
        res = build_bundle(space, device, st, threads=threads, protocol_overrides=overrides, only=only,
                           bundle_path=bundle_path, jobs=jobs, progress=ClickProgress(quiet or as_json),
                           calibration_models=IOS_CALIBRATION_MODELS if calibration_models is None
                           else calibration_models, dtype=dtype)
    m = res.bundle.manifest
    if res.lut is not None:
        res.lut.save(out)
        if csv_path:
            res.lut.to_csv(csv_path)
    cmd = ingest_command(device, res.bundle.path)
    summary = {
        "status": "waiting_for_results" if res.waiting else "complete",
        "bundle": str(res.bundle.path), "bundle_id": m.bundle_id, "bundle_reused": res.bundle.reused,
        "device": device.name, "space": space.id, "models": len(m.models), "exported": res.exported,
        "cached": res.cached, "calibration_networks": len(m.networks), "results_in_store": res.have,
        "lut": str(out) if res.lut is not None else None,
        "export_seconds": round(res.export_seconds, 2), "bundle_seconds": round(res.bundle_seconds, 2),
        "total_seconds": round(time.perf_counter() - t0, 2), "ingest_command": cmd, "failed": res.failed,
    }
    if as_json:
        echo_json(summary)
        return
    rows = [[k, v] for k, v in summary.items() if k not in ("status", "ingest_command", "failed") and v is not None]
    click.echo(table(rows + failed_rows(res.failed), ["bundle", "value"], right=[False, False]))
    if res.failed:
        click.echo(f"\n{failed_note(res.failed)}")
    if not res.waiting:
        click.echo(f"\nAll {len(m.models)} results of this bundle are in the store; LUT written to {out}.")
        return
    click.echo(
        f"\nWaiting for results: {len(m.models) - res.have} of {len(m.models)} models have none yet.\n"
        f"Run the bundle on the phone (steps in {res.bundle.path / 'README.md'}), save the app's console output,"
        f" then:\n  {cmd}"
    )
