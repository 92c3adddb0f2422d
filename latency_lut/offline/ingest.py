"""Results in: parsed results of a bundle -> store rows -> the LUT.

Everything is read and checked first; only when every source is valid is anything written, so a bad file
(another bundle's log, a cut-off line, wrong units) leaves the store exactly as it was. Each stored measurement
carries its bundle id and a digest of its numbers in ``extra``; a result whose digest is already stored for the
configuration is skipped, which is what makes ingesting the same log twice a no-op.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latency_lut import __version__
from latency_lut.backends.ios.app import IOSApp
from latency_lut.backends.ios.bundle import Manifest, default_bundle_root, find_bundle, load_manifest
from latency_lut.backends.ios.errors import BundleError, ResultsFormatError
from latency_lut.backends.ios.results import Parsed, Result, parse_results
from latency_lut.build import aggregate
from latency_lut.devices import Device
from latency_lut.lut import LUT
from latency_lut.measure import GatedResult, Protocol, RunResult, check_plausible_stats
from latency_lut.networks import NetMeasurement, NetworkSpec
from latency_lut.spaces import SearchSpace, from_description
from latency_lut.store import Store
from latency_lut.validate import CALIBRATION_SEED, fit_into_header, stored_rounds

# Device facts a log or the command line may give, under these names in the LUT header's device_info.
DEVICE_FIELDS = ("product_type", "ios_version", "device_name", "udid")


@dataclass
class Source:
    name: str
    text: str


@dataclass
class IngestReport:
    manifest: Manifest
    sources: list[str]
    parsed: int = 0
    added: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    repeated: list[str] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    device_info: dict[str, Any] = field(default_factory=dict)
    lut: LUT | None = None
    calibration: str = "the bundle carries no networks"  # what happened to the LUT's calibration


def resolve_manifest(sources: Sequence[Source], bundle: Path | None, roots: Sequence[Path] | None = None) -> Manifest:
    """The bundle the results belong to: the one given, else the one whose id the results carry."""
    if bundle is not None:
        return load_manifest(bundle)
    ids: set[str] = set()
    for s in sources:
        ids |= parse_results(s.text, s.name, None).bundle_ids
    if not ids:
        raise ResultsFormatError(
            f"no fbnet-lut results in {', '.join(s.name for s in sources)} (no run is named 'fbnet-lut/<bundle id>/"
            "<key>'); was the bundle's benchmark_params.json used?"
        )
    if len(ids) > 1:
        raise BundleError(f"the results come from {len(ids)} bundles ({', '.join(sorted(ids))}); ingest each "
                          "bundle's results separately with --bundle DIR")
    return load_manifest(find_bundle(ids.pop(), list(roots) if roots else [default_bundle_root()]))


def manifest_space(manifest: Manifest) -> SearchSpace:
    sp = manifest.space
    return from_description(sp)


def _device_info(parsed: Sequence[Parsed], given: dict[str, Any], manifest: Manifest, device: Device) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for p in parsed:
        found.update({k: v for k, v in p.device.items() if v not in (None, "")})
    info = {**IOSApp(device, manifest.threads).device_info(), **found,
            **{k: v for k, v in given.items() if v not in (None, "")}}
    allowed = [str(t) for t in device.options.get("product_types") or []]
    pt = info.get("product_type")
    if allowed and isinstance(pt, str) and pt not in allowed:
        raise ResultsFormatError(
            f"the results come from a {pt}, but device {device.name!r} is {' / '.join(allowed)}; use (or write) a "
            "descriptor for that phone"
        )
    return {k: v for k, v in info.items() if k not in ("product_types",)}


def _check_found(p: Parsed, manifest: Manifest) -> None:
    """A source without one usable result is the wrong file (or an empty one); every number must be plausible."""
    if not p.results:
        why = (f"; {len(p.failed)} model(s) started but gave no numbers, e.g. "
               f"{next(iter(p.failed))}: {next(iter(p.failed.values()))}" if p.failed else
               f"; it names only other models ({', '.join(p.unknown[:3])})" if p.unknown else "")
        raise ResultsFormatError(
            f"{p.source}: found no result of bundle {manifest.bundle_id} in this {p.form} file{why}. Give the app's "
            "console log or a results .json/.csv of this bundle; nothing was stored"
        )
    for r in p.results:
        check_plausible_stats(r.stats, f"{p.source}: result {r.key}", ResultsFormatError)


def ingest(
    sources: Sequence[Source],
    manifest: Manifest,
    device: Device,
    store: Store,
    *,
    device_info: dict[str, Any] | None = None,
) -> IngestReport:
    """Store every new result of ``sources`` for ``manifest``'s configuration and aggregate the LUT."""
    if manifest.device != device.name:
        raise BundleError(f"bundle {manifest.bundle_id} ({manifest.path}) was made for device {manifest.device!r}, "
                          f"not {device.name!r}")
    # 1. Read and check everything before writing anything.
    parsed = [parse_results(s.text, s.name, manifest) for s in sources]
    for p in parsed:
        _check_found(p, manifest)
    rep = IngestReport(manifest, [s.name for s in sources])
    latest: dict[str, Result] = {}
    for p in parsed:
        rep.parsed += len(p.results)
        rep.unknown += [u for u in p.unknown if u not in rep.unknown]
        rep.repeated += p.repeated
        for key, why in p.failed.items():
            rep.failed[key] = f"{p.source}, {why}"
        for r in p.results:
            if key_in := latest.get(r.key):
                if key_in.digest != r.digest:
                    rep.repeated.append(r.key)
            latest[r.key] = r
    for key in latest:
        rep.failed.pop(key, None)
    rep.device_info = _device_info(parsed, device_info or {}, manifest, device)

    # 2. Store what is new.
    config = manifest.config()
    protocol = Protocol.from_dict(manifest.protocol)
    stored: dict[str, set[str]] = {}
    for key, extra in store.extras(config):
        stored.setdefault(key, set()).add(str(extra.get("result_digest")))
    session: int | None = None
    for key, r in latest.items():
        if r.digest in stored.get(key, set()):
            rep.duplicates.append(key)
            continue
        if session is None:
            env = {**rep.device_info, "bundle_id": manifest.bundle_id, "results": rep.sources}
            session = store.start_session(config, env, __version__)
        if key in stored:
            rep.replaced.append(key)
        extra = {**r.extra, "bundle_id": r.bundle_id, "result_digest": r.digest}
        run = RunResult(list(r.samples_ms), None if r.samples_ms else r.stats, extra)
        flagged = run.summary().noise > protocol.noise_threshold
        store.add(session, key, GatedResult([run], 0, flagged))
        rep.added.append(key)
        if flagged:
            rep.flagged.append(key)

    # 3. The LUT of everything the store holds for this configuration.
    space = manifest_space(manifest)
    done = store.completed_keys(config)
    rep.missing = [k for k in manifest.keys if k not in done]
    rep.lut = aggregate(store, config, space, device, IOSApp(device, manifest.threads))
    if manifest.networks:
        rep.calibration = _calibrate(rep.lut, manifest, device, store)
    return rep


def _calibrate(lut: LUT, manifest: Manifest, device: Device, store: Store) -> str:
    """Fit the LUT's calibration on the bundle's networks once the phone's results for them are in."""
    if not lut.header["complete"]:
        return "not fitted yet: the LUT is incomplete"
    nets = [NetworkSpec.from_dict(d) for d in manifest.networks.values()]
    rounds = stored_rounds(store, manifest.config(), nets)
    measured = {n.key: NetMeasurement(n.key, [rounds[n.key][r] for r in sorted(rounds[n.key])])
                for n in nets if n.key in rounds}
    cal, report, _ = fit_into_header(lut, device.name, nets, measured, 5, CALIBRATION_SEED,
                                     {"by": "ingest", "bundle_id": manifest.bundle_id, "rounds": 1})
    if cal is None and report.get("refused"):
        return f"not fitted: {report['refused']}"
    if cal is None:
        return f"not fitted yet: {len(measured)} of the bundle's {len(nets)} networks have results (a fit needs 3)"
    cv = report["calibrated_cv"]
    return (f"fitted on {len(measured)} networks: {100 * cv['within_10']:.0f}% within 10% "
            f"({report['folds']}-fold CV; plain sum {100 * report['plain_sum']['within_10']:.0f}%)")


def write_lut(rep: IngestReport, path: Path, csv_path: Path | None = None) -> Path:
    assert rep.lut is not None
    rep.lut.save(path)
    if csv_path:
        rep.lut.to_csv(csv_path)
    return path


def space_missing(rep: IngestReport) -> int:
    """Ops of the whole space still without a measurement (more than the bundle's when it was built --only)."""
    assert rep.lut is not None
    return len(manifest_space(rep.manifest).unique_specs()) - len(rep.lut)
