"""Device descriptors: YAML files naming a device, its kind, runtimes and how to reach it.

Built-in descriptors ship in the repository's ``devices/`` folder, installed as the package data
``latency_lut.descriptors``, so they are found after a non-editable install too. A user can pass a path to their
own descriptor file anywhere a device name is accepted, or put descriptors in ``$FBNET_LUT_DEVICES``.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from latency_lut.errors import DeviceError
from latency_lut.safe_yaml import load_yaml

KINDS = ("local", "android", "ios", "ssh")
MAX_THREADS = 256  # runtime threads of one benchmark; also the CLI's bound on --threads

# Fields every descriptor may have, then the fields each kind adds. A key in neither is a typo and is rejected.
COMMON_FIELDS = {"name": str, "kind": str, "description": str, "runtime": str, "runtimes": list, "threads": int}
_NUM = (int, float)
KIND_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "local": {},
    "android": {},
    # iOS: the phone runs the TFLite iOS benchmark app (latency_lut/backends/ios, latency_lut/offline, docs/ios.md).
    "ios": {"product_types": list, "app_bundle_id": str, "tflite_version": str, "delegate": str,
            "warmup": int, "runs": int, "min_seconds": _NUM, "max_seconds": _NUM, "noise_threshold": _NUM,
            "warmup_min_seconds": _NUM, "run_delay": _NUM, "udid": str, "documents_dir": str,
            "timeout_seconds": _NUM},
}
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "local": (), "android": (), "ios": ("product_types", "app_bundle_id", "tflite_version"),
}

# Android phones over ADB (docs/android.md describes every field; backends/android/config.py checks the values).
_NUMBER = (int, float)
KIND_FIELDS["android"] = {
    "transport": str, "serial": str, "address": str, "adb_key": str, "cpu_mask": (str, int),
    "thermal_zones": list, "cooldown_celsius": _NUMBER, "cooldown_timeout_seconds": _NUMBER,
    "cooldown_poll_seconds": _NUMBER, "remote_dir": str, "benchmark_binary": str, "delegate": str, "xnnpack": bool,
    "gpu": bool, "nnapi": bool, "op_profiling": bool, "fixed_performance_mode": bool, "keep_files": bool,
    "connect_timeout_seconds": _NUMBER, "auth_timeout_seconds": _NUMBER, "reconnect_attempts": int,
    "reconnect_delay_seconds": _NUMBER,
}
REQUIRED_FIELDS["android"] = ("transport", "cpu_mask", "benchmark_binary")

# Linux boards over SSH (docs/ssh.md describes every field; latency_lut/backends/ssh/config.py checks the values).
KIND_FIELDS["ssh"] = {
    "host": str, "port": int, "user": str, "ssh_config": str, "identity_file": str, "ssh_options": list,
    "python": str, "litert_module": str, "cpu_mask": (str, int), "governor": str, "thermal_zones": list,
    "cooldown_celsius": _NUMBER, "cooldown_timeout_seconds": _NUMBER, "cooldown_poll_seconds": _NUMBER,
    "remote_dir": str, "keep_files": bool, "xnnpack": bool, "optimization": str,
    "connect_timeout_seconds": _NUMBER, "reconnect_attempts": int, "reconnect_delay_seconds": _NUMBER,
}
REQUIRED_FIELDS["ssh"] = ("host",)


@dataclass(frozen=True)
class Device:
    name: str
    kind: str
    runtime: str
    runtimes: tuple[str, ...] = ()
    threads: int = 1
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "runtime": self.runtime, "runtimes": list(self.runtimes),
                "threads": self.threads, "description": self.description, **self.options}


def _builtin_dir() -> Path:
    return Path(str(resources.files("latency_lut.descriptors")))


def _search_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("FBNET_LUT_DEVICES", "").split(os.pathsep) if p]
    return dirs + [_builtin_dir()]


def descriptor_files() -> dict[str, Path]:
    """Device name -> descriptor file; user folders shadow the built-ins."""
    found: dict[str, Path] = {}
    for d in reversed(_search_dirs()):
        if d.is_dir():
            for f in sorted(d.glob("*.yaml")):
                found[f.stem] = f
    return found


def list_devices() -> list[Device]:
    return [load_descriptor(p) for _, p in sorted(descriptor_files().items())]


def get_device(name_or_path: str | Path) -> Device:
    """A device by built-in name or by descriptor path."""
    s = str(name_or_path)
    if s.endswith((".yaml", ".yml")) or os.sep in s:
        return load_descriptor(Path(s))
    files = descriptor_files()
    if s not in files:
        close = difflib.get_close_matches(s, files, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DeviceError(
            f"unknown device {s!r}{hint}; known devices: {', '.join(sorted(files))}, or pass a descriptor .yaml path"
        )
    return load_descriptor(files[s])


def load_descriptor(path: Path) -> Device:
    doc = load_yaml(path, what="device descriptor", error=DeviceError, max_bytes=64 * 1024)
    return parse_descriptor(doc, str(path))


def parse_descriptor(doc: Any, source: str = "<descriptor>") -> Device:
    if not isinstance(doc, dict):
        raise DeviceError(f"device descriptor {source} is not a YAML mapping")
    kind = doc.get("kind")
    if kind not in KINDS:
        raise DeviceError(f"device descriptor {source}: field 'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    allowed = {**COMMON_FIELDS, **KIND_FIELDS[kind]}
    for key, value in doc.items():
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(sorted(allowed))}"
            raise DeviceError(f"device descriptor {source}: unknown field {key!r}{hint}")
        typ = allowed[key]
        if value is not None and not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise DeviceError(f"device descriptor {source}: field {key!r} has the wrong type ({type(value).__name__})")
    doc = {k: v for k, v in doc.items() if v is not None}  # "field: ~" is the field left out
    for key in ("name", "runtime", *REQUIRED_FIELDS[kind]):
        if doc.get(key) in (None, ""):
            raise DeviceError(f"device descriptor {source}: required field {key!r} is missing")
    threads = int(doc.get("threads", 1))
    if not 1 <= threads <= MAX_THREADS:
        raise DeviceError(f"device descriptor {source}: field 'threads' must be between 1 and {MAX_THREADS}")
    runtimes = tuple(doc.get("runtimes") or (doc["runtime"],))
    if not all(isinstance(r, str) for r in runtimes):
        raise DeviceError(f"device descriptor {source}: field 'runtimes' must list runtime names (strings)")
    if doc["runtime"] not in runtimes:
        raise DeviceError(f"device descriptor {source}: runtime {doc['runtime']!r} is not in its 'runtimes'")
    options = {k: v for k, v in doc.items() if k not in COMMON_FIELDS}
    return Device(
        name=str(doc["name"]), kind=kind, runtime=str(doc["runtime"]), runtimes=runtimes, threads=threads,
        description=str(doc.get("description", "")), options=options, source=source,
    )
