"""``fbnet-lut build`` for iOS devices: export the bundle, then wait for the phone's results.

Exports are cached (the artifact cache) and the bundle is reused when unchanged, so rerunning the command is
cheap. If the store already holds results of this configuration the LUT is (re)written from them, and when all
of them are there the build is simply complete.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latency_lut.backends.ios.app import IOSApp
from latency_lut.backends.ios.bundle import BundleResult, make_bundle
from latency_lut.build import Progress, aggregate, config_for
from latency_lut.devices import Device
from latency_lut.errors import ExportError
from latency_lut.export import export_many
from latency_lut.lut import LUT
from latency_lut.networks import NetworkSpec, export_networks, sample_archs
from latency_lut.ops import OpSpec
from latency_lut.spaces import SearchSpace
from latency_lut.store import Store
from latency_lut.validate import CALIBRATION_SEED

IOS_CALIBRATION_MODELS = 12  # sampled networks in a whole-space bundle (plus the named ones); the phone runs them


@dataclass
class BundleBuild:
    bundle: BundleResult
    exported: int
    cached: int
    export_seconds: float
    bundle_seconds: float
    have: int  # keys of the bundle already in the store
    lut: LUT | None
    failed: dict[str, str] = field(default_factory=dict)  # key -> why it could not be exported/quantized

    @property
    def waiting(self) -> bool:
        return self.have < len(self.bundle.manifest.models)


def select_specs(space: SearchSpace, only: Sequence[str] = ()) -> list[OpSpec]:
    """The space's unique ops, or the subset ``only`` (keys); an unknown key is an error naming close ones."""
    from latency_lut.errors import UnknownOpError

    specs = space.unique_specs()
    if not only:
        return specs
    by_key = {s.key: s for s in specs}
    unknown = [k for k in only if k not in by_key]
    if unknown:
        raise UnknownOpError(f"--only: {', '.join(unknown)} not in space {space.id}; see "
                             f"'fbnet-lut build --device ... --only' keys from a LUT of that space", unknown)
    return [by_key[k] for k in dict.fromkeys(only)]


def bundled_specs(specs: Sequence[OpSpec], failed: dict[str, str]) -> list[OpSpec]:
    """The specs that go into a bundle: those that exported (the failed ones are named in the manifest and the
    LUT stays incomplete); an error naming a failure when none did, since an empty bundle measures nothing."""
    ok = [s for s in specs if s.key not in failed]
    if not ok and failed:
        key, why = next(iter(failed.items()))
        raise ExportError(f"none of the {len(specs)} models could be exported, so no bundle was written; {key}: {why}")
    return ok


def build_bundle(
    space: SearchSpace,
    device: Device,
    store: Store,
    *,
    threads: int | None = None,
    protocol_overrides: dict[str, Any] | None = None,
    only: Sequence[str] = (),
    bundle_path: Path | None = None,
    bundle_root: Path | None = None,
    jobs: int = 1,
    progress: Progress | None = None,
    calibration_models: int = IOS_CALIBRATION_MODELS,
    dtype: str = "fp32",
) -> BundleBuild:
    """Export the ops (and, for a whole-space bundle, the calibration networks: the space's named architectures
    plus ``calibration_models`` sampled ones, which ingest fits the LUT's calibration on) into a bundle, in
    ``dtype`` (int8: full-integer models, which the app's benchmark feeds 8-bit inputs). A block that fails to
    export (or quantize) is left out and named in ``failed`` and in the manifest, as in an online build."""
    app = IOSApp(device, threads)
    app.use_dtype(dtype)
    protocol = app.protocol(**(protocol_overrides or {}))
    specs = select_specs(space, only)
    config = config_for(device, app, protocol)

    t0 = time.perf_counter()
    from latency_lut.export import artifact_path

    cached = sum(artifact_path(s, "tflite", dtype=dtype).exists() for s in specs)
    if progress:
        progress.start("export tflite" + ("" if dtype == "fp32" else f" {dtype}"), len(specs))
    failed: dict[str, str] = {}
    artifacts = export_many(specs, "tflite", jobs=jobs, on_done=(lambda s: progress.advance(s.key)) if progress
                            else None, dtype=dtype, errors=failed)
    if progress:
        progress.finish()
    specs = bundled_specs(specs, failed)
    nets: list[NetworkSpec] = []
    if not only and calibration_models > 0:
        candidates = sample_archs(space, calibration_models, CALIBRATION_SEED, named=True)
        if progress:
            progress.start("export networks", len(candidates))
        made = export_networks(candidates, "tflite", jobs=jobs, dtype=dtype,
                               on_done=(lambda n: progress.advance(n.name)) if progress else None)
        if progress:
            progress.finish()
        nets = [n for n in candidates if isinstance(made.get(n.key), Path)]  # a failed export: one model fewer
        artifacts = {**artifacts, **{n.key: made[n.key] for n in nets}}
    t1 = time.perf_counter()
    bundle = make_bundle(
        specs=[*specs, *nets], artifacts=artifacts, config=config, protocol=protocol,
        networks={n.key: n.to_dict() for n in nets},
        space={**space.describe(), "id": space.id},
        app={"app_bundle_id": app.option("app_bundle_id"), "documents_dir": app.option("documents_dir"),
             "delegate": app.delegate},
        whole_space=not only, root=bundle_root, path=bundle_path, failed=failed,
    )
    t2 = time.perf_counter()
    done = store.completed_keys(config)
    have = sum(s.key in done for s in [*specs, *nets])
    lut = aggregate(store, config, space, device, app) if done else None
    return BundleBuild(bundle, len(specs) - cached, cached, t1 - t0, t2 - t1, have, lut, failed)


def ingest_command(device: Device, bundle: Path) -> str:
    return f"fbnet-lut ingest --device {shlex.quote(device.name)} --bundle {shlex.quote(str(bundle))} CONSOLE.log"


def build_models_bundle(units: Sequence[Any], device: Device, *, threads: int | None = None,
                        protocol_overrides: dict[str, Any] | None = None, bundle_path: Path | None = None,
                        bundle_root: Path | None = None, dtype: str = "fp32") -> BundleResult:
    """A bundle of whole models (``models.ModelUnit``s or a space's networks) for ``fbnet-lut measure`` on an
    iPhone: each exported to TFLite (in ``dtype``) under its content key; the phone's log is read back with
    ``ingest``."""
    from latency_lut.errors import LatencyLutError
    from latency_lut.models import export_units
    from latency_lut.spaces import get_space

    app = IOSApp(device, threads)
    app.use_dtype(dtype)
    protocol = app.protocol(**(protocol_overrides or {}))
    config = config_for(device, app, protocol)
    arts = export_units(units, "tflite", dtype=dtype)
    bad = [(u.name, a) for u in units if isinstance(a := arts.get(u.key), LatencyLutError)]
    if bad:
        raise LatencyLutError(f"cannot bundle {bad[0][0]}: {bad[0][1]}")
    space = get_space("fbnet", 224, 1.0)  # the manifest's space only names the LUT that ingest rewrites
    return make_bundle(specs=units, artifacts={k: v for k, v in arts.items() if v is not None}, config=config,
                       protocol=protocol, space={**space.describe(), "id": space.id},
                       app={"app_bundle_id": app.option("app_bundle_id"),
                            "documents_dir": app.option("documents_dir"), "delegate": app.delegate},
                       whole_space=False, root=bundle_root, path=bundle_path)
