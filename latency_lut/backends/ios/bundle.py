"""The benchmark bundle: what goes to the phone, and the manifest that the results are checked against.

Layout (one folder per model, so that a folder is all the stock app needs for one run)::

    <bundle>/
      manifest.json                   bundle id, device, settings, protocol, key -> files
      README.md                       the steps on the Mac and the phone
      run_list.txt                    model folders in run order (for a batch runner)
      models/<key>/<key>.tflite
      models/<key>/benchmark_params.json

Every ``benchmark_params.json`` names its run ``fbnet-lut/<bundle id>/<key>`` (``benchmark_name``), which
benchmark_model echoes in its log; that line is the per-model separator the ingest maps results by, and the
bundle id in it is how a log from another bundle is recognised.

The bundle id is a content hash (models, parameters, settings, device), so rebuilding an unchanged bundle gives
the same id and a log taken from an earlier copy still matches. The folder is assembled under a temporary name
and renamed, so an interrupted build never leaves a half bundle that looks complete.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from latency_lut import __version__
from latency_lut.backends.ios.app import DELEGATE_FLAGS
from latency_lut.backends.ios.errors import BundleError
from latency_lut.checksums import sha256_file
from latency_lut.measure import Protocol
from latency_lut.ops import OpSpec
from latency_lut.store import Config

FORMAT = "fbnet-lut-ios-bundle"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
PARAMS = "benchmark_params.json"
NAME_PREFIX = "fbnet-lut"
M = TypeVar("M", bound="Manifest")


def default_bundle_root() -> Path:
    """$FBNET_LUT_BUNDLES, else profiles/bundles beside the LUT files and the store."""
    return Path(os.environ.get("FBNET_LUT_BUNDLES") or Path("profiles") / "bundles")


def benchmark_name(bundle_id: str, key: str) -> str:
    return f"{NAME_PREFIX}/{bundle_id}/{key}"


def split_benchmark_name(name: str) -> tuple[str, str] | None:
    """``(bundle id, key)`` of a benchmark name this tool wrote, None for any other name."""
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != NAME_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def app_params(key: str, graph: str, bundle_id: str, threads: int, protocol: Protocol, delegate: str,
               warmup_min_seconds: float, run_delay: float) -> dict[str, str]:
    """One model's ``benchmark_params.json``: benchmark_model flags, every value a string as the app expects."""
    def s(v: float) -> str:
        return f"{v:g}"

    return {
        "benchmark_name": benchmark_name(bundle_id, key),
        "graph": graph,
        "num_threads": str(threads),
        "warmup_runs": str(protocol.warmup),
        "warmup_min_secs": s(warmup_min_seconds),
        "num_runs": str(protocol.runs),
        "min_secs": s(protocol.min_seconds),
        "max_secs": s(protocol.max_seconds),
        "run_delay": s(run_delay),
        **DELEGATE_FLAGS[delegate],
    }


@dataclass(frozen=True)
class ModelEntry:
    key: str
    folder: str  # relative to the bundle
    file: str  # the .tflite, relative to the bundle
    params: str  # the benchmark_params.json, relative to the bundle
    sha256: str
    bytes: int

    @property
    def graph(self) -> str:
        return Path(self.file).name


@dataclass
class Manifest:
    """A bundle's manifest; other platforms' bundles (android/offline.py) subclass it with their own format."""

    FORMAT: ClassVar[str] = FORMAT
    WHAT: ClassVar[str] = "fbnet-lut iOS bundle"

    bundle_id: str
    device: str
    fingerprint: str
    runtime: str
    settings: dict[str, Any]
    protocol: dict[str, Any]
    space: dict[str, Any]
    app: dict[str, Any]
    models: list[ModelEntry]
    whole_space: bool
    created: str = ""
    tool_version: str = __version__
    path: Path | None = field(default=None, compare=False)
    # Whole networks the bundle carries for the calibration (key -> NetworkSpec.to_dict()); ingest fits on them.
    networks: dict[str, Any] = field(default_factory=dict)
    # Blocks of the build that failed to export or quantize (key -> the converter's reason): left out of the
    # bundle, so its LUT stays incomplete, and ingest names them.
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        return [m.key for m in self.models]

    def by_key(self) -> dict[str, ModelEntry]:
        return {m.key: m for m in self.models}

    @property
    def threads(self) -> int:
        return int(self.settings["threads"])

    def config(self) -> Config:
        """The store configuration of every result of this bundle (from the manifest, never recomputed: an
        upgrade of litert-torch between build and ingest must not move the results to another configuration)."""
        return Config(self.device, self.fingerprint, self.runtime, self.settings)

    def to_dict(self) -> dict[str, Any]:
        d = {"format": self.FORMAT, "schema_version": SCHEMA_VERSION}
        d.update({k: v for k, v in asdict(self).items() if k != "path"})
        return d

    @classmethod
    def from_dict(cls: type[M], doc: Any, source: str) -> M:
        if not isinstance(doc, dict) or doc.get("format") != cls.FORMAT:
            raise BundleError(f"{source} is not a {cls.WHAT} manifest")
        if doc.get("schema_version") != SCHEMA_VERSION:
            raise BundleError(f"{source}: manifest schema_version {doc.get('schema_version')!r} is not supported "
                              f"(this tool reads {SCHEMA_VERSION}); rebuild the bundle")
        try:
            models = [ModelEntry(**m) for m in doc["models"]]
            fields = {f.name: doc[f.name] for f in dataclass_fields(cls)
                      if f.name not in ("models", "path", "networks", "failed")}
            fields["networks"] = dict(doc.get("networks") or {})  # none in bundles made before calibration
            fields["failed"] = {str(k): str(v) for k, v in (doc.get("failed") or {}).items()}
        except (KeyError, TypeError) as e:
            raise BundleError(f"{source}: manifest is incomplete or malformed ({e}); rebuild the bundle") from None
        return cls(models=models, **fields)


def load_manifest(bundle: str | Path, cls: type[M] = Manifest) -> M:  # type: ignore[assignment]
    """The manifest of a bundle folder (or of a manifest.json path)."""
    p = Path(bundle)
    path = p if p.name == MANIFEST else p / MANIFEST
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(f"{p} is not a bundle folder (no {MANIFEST}); pass the folder 'fbnet-lut build' made") \
            from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"cannot read bundle manifest {path}: {e}") from None
    m = cls.from_dict(doc, str(path))
    m.path = path.parent
    return m


def find_bundle(bundle_id: str, roots: Sequence[Path]) -> Path:
    """The bundle folder with this id under any of ``roots``."""
    for root in roots:
        if not root.is_dir():
            continue
        for manifest in sorted(root.glob(f"*/{MANIFEST}")):
            try:
                if json.loads(manifest.read_text()).get("bundle_id") == bundle_id:
                    return manifest.parent
            except (OSError, ValueError):
                continue
    where = ", ".join(str(r) for r in roots)
    raise BundleError(f"no bundle with id {bundle_id} under {where}; pass the bundle folder with --bundle DIR")


def _link_or_copy(src: Path, dst: Path) -> None:
    # Hard links keep a bundle of the 224 space from doubling the artifact cache's disk use.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@dataclass
class BundleResult:
    path: Path
    manifest: Manifest
    reused: bool


def make_bundle(
    *,
    specs: Sequence[OpSpec],
    artifacts: Mapping[str, Path],
    config: Config,
    protocol: Protocol,
    space: dict[str, Any],
    app: dict[str, Any],
    whole_space: bool,
    root: Path | None = None,
    path: Path | None = None,
    networks: Mapping[str, Any] | None = None,
    failed: Mapping[str, str] | None = None,
) -> BundleResult:
    """Assemble (or find up to date) the bundle of ``specs``; ``path`` overrides ``root/<name>-<id>``. ``failed``
    are the blocks left out because they failed to export (key -> reason), recorded in the manifest."""
    settings = config.settings
    threads, delegate = int(settings["threads"]), str(settings["delegate"])
    hashes = {s.key: sha256_file(Path(artifacts[s.key])) for s in specs}
    # Parameters without the name (the name holds the id being computed).
    params = {s.key: app_params(s.key, f"{s.key}.tflite", "", threads, protocol, delegate,
                                settings["warmup_min_seconds"], settings["run_delay"]) for s in specs}
    ident = {"device": config.device, "fingerprint": config.fingerprint, "runtime": config.runtime,
             "settings": settings, "space": space,
             "models": [[s.key, hashes[s.key], params[s.key]] for s in specs], **failed_ident(failed)}
    blob = json.dumps(ident, sort_keys=True, separators=(",", ":"), default=str)
    bundle_id = hashlib.sha256(blob.encode()).hexdigest()[:16]

    models = [ModelEntry(s.key, f"models/{s.key}", f"models/{s.key}/{s.key}.tflite",
                         f"models/{s.key}/{PARAMS}", hashes[s.key], Path(artifacts[s.key]).stat().st_size)
              for s in specs]
    manifest = Manifest(
        bundle_id=bundle_id, device=config.device, fingerprint=config.fingerprint, runtime=config.runtime,
        settings=settings, protocol=protocol.to_dict(), space=space, app=app, models=models,
        whole_space=whole_space, created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        networks=dict(networks or {}), failed=dict(failed or {}),
    )
    name = f"{config.device}-{space['id']}-{bundle_id[:12]}"
    target = Path(path) if path is not None else (root or default_bundle_root()) / name

    def fill(tmp: Path) -> None:
        for s, m in zip(specs, models):
            (tmp / m.folder).mkdir(parents=True)
            _link_or_copy(Path(artifacts[s.key]), tmp / m.file)
            p = {**params[s.key], "benchmark_name": benchmark_name(bundle_id, s.key)}
            (tmp / m.params).write_text(json.dumps(p, indent=2, allow_nan=False) + "\n")
        (tmp / "run_list.txt").write_text("".join(f"{m.folder}\n" for m in models))
        (tmp / "README.md").write_text(bundle_readme(manifest, name))

    return place_bundle(target, manifest, fill)


def failed_ident(failed: Mapping[str, str] | None) -> dict[str, Any]:
    """The failed blocks' part of a bundle id: none without failures (the ids of such bundles stay as they were),
    else their keys, so that a bundle that lacks them is never taken for the same models built without them."""
    return {"failed": sorted(failed)} if failed else {}


def place_bundle(target: Path, manifest: Manifest, fill: Callable[[Path], None]) -> BundleResult:
    """Write a bundle at ``target``: ``fill`` writes its files into a temporary folder, the manifest goes in last
    and the folder is renamed into place, so an interrupted build never leaves a half bundle that looks complete.
    An up-to-date bundle of the same id is reused; a folder holding anything else is an error."""
    if target.exists():
        if _up_to_date(target, manifest.bundle_id, manifest.models):
            return BundleResult(target, load_manifest(target, type(manifest)), reused=True)
        if (target / MANIFEST).exists() or any(target.iterdir()):
            old = _peek_id(target)
            raise BundleError(
                f"{target} already holds {'bundle ' + old if old else 'other files'}; results of that bundle would "
                "no longer be matched. Choose another --bundle folder or delete it"
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        fill(tmp)
        (tmp / MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=1, allow_nan=False) + "\n")
        if target.exists():  # an empty folder the user made for --bundle
            target.rmdir()
        os.replace(tmp, target)
    except OSError as e:
        raise BundleError(f"cannot write bundle {target}: {e.strerror or e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    manifest.path = target
    return BundleResult(target, manifest, reused=False)


def _peek_id(target: Path) -> str | None:
    try:
        return str(json.loads((target / MANIFEST).read_text()).get("bundle_id"))
    except (OSError, ValueError):
        return None


def _up_to_date(target: Path, bundle_id: str, models: Sequence[ModelEntry]) -> bool:
    if _peek_id(target) != bundle_id:
        return False
    return all((target / m.file).is_file() and (target / m.file).stat().st_size == m.bytes
               and (target / m.params).is_file() for m in models)


def bundle_readme(m: Manifest, name: str) -> str:
    """The bundle's README: the steps on the Mac and the phone, with this bundle's names filled in."""
    s = m.settings
    return f"""# fbnet-lut iOS benchmark bundle `{m.bundle_id}`

Device `{m.device}` ({m.fingerprint.split('|')[1]}), space `{m.space['id']}`, {len(m.models)} models,
TFLite {s['runtime_version']} with delegate `{s['delegate']}`, {s['threads']} thread(s),
{m.protocol['warmup']} warmup + at least {m.protocol['runs']} timed runs per model.
{'' if m.whole_space else 'This bundle holds a subset of the space (built with --only).'}

## On the Mac
1. Build the TFLite iOS benchmark app (tensorflow/lite/tools/benchmark/ios) in Xcode, signed with your team,
   bundle id `{m.app.get('app_bundle_id')}` (or change `app_bundle_id` in the device descriptor).
2. Either (one model per run, stock app) copy `models/<key>/<key>.tflite` and its `benchmark_params.json`
   into the app's `benchmark_data` folder, or (whole bundle) copy this folder into the app's Documents as
   `{m.app.get('documents_dir', 'fbnet-lut')}/{name}` with a batch runner that walks `run_list.txt`
   (see docs/ios.md). `fbnet-lut ingest --device {m.device} --bundle <this folder> --from-phone` does the
   copy, launch and log capture with pymobiledevice3 (untested on a real phone).

## On the phone
3. Charge it, close other apps, let it cool, keep the screen on; run the benchmark.
4. Save the console output (Xcode: the debug console; or the syslog) as a text file. Every model's block is
   named `{NAME_PREFIX}/{m.bundle_id}/<key>`, so the order and any other output in the file do not matter.

## Back here
5. `fbnet-lut ingest --device {m.device} --bundle <this folder> console.log`
   (or a JSON/CSV results file, see docs/ios.md). Ingest as many partial logs as you like: missing models are
   listed, the LUT stays marked incomplete until all {len(m.models)} have arrived, and a log ingested twice
   adds nothing.
"""
