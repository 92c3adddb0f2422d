"""An Android device descriptor's fields, checked and normalized (the generic loader has checked names and types)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latency_lut.backends.android.adb import Target
from latency_lut.device_fields import cpu_mask, numbers, thermal
from latency_lut.device_fields import expand as _expand
from latency_lut.errors import DeviceError

DEFAULT_KEY = "~/.android/adbkey"  # the key `adb` itself uses, so a phone that trusts adb trusts this tool too
DEFAULT_REMOTE_DIR = "/data/local/tmp/fbnet-lut"

# The descriptor's ``delegate``: what benchmark_model runs the model with (none: TFLite's built-in CPU kernels).
DELEGATES = ("xnnpack", "none", "gpu", "nnapi")

# ELF e_machine -> Android ABI, to check the benchmark binary before pushing it.
ELF_ABIS = {183: "arm64-v8a", 40: "armeabi-v7a", 62: "x86_64", 3: "x86"}


@dataclass(frozen=True)
class AndroidConfig:
    """Everything the Android backend needs from a descriptor."""

    name: str
    source: str
    target: Target
    adb_key: Path
    cpu_mask: str
    threads: int
    benchmark_binary: Path
    remote_dir: str = DEFAULT_REMOTE_DIR
    thermal_zones: tuple[int | str, ...] = ()
    cooldown_celsius: float | None = None
    cooldown_timeout_seconds: float = 600.0
    cooldown_poll_seconds: float = 5.0
    xnnpack: bool = True
    gpu: bool = False
    nnapi: bool = False
    op_profiling: bool = False
    fixed_performance_mode: bool = False
    keep_files: bool = False
    connect_timeout_seconds: float = 10.0
    auth_timeout_seconds: float = 30.0
    reconnect_attempts: int = 3
    reconnect_delay_seconds: float = 2.0

    @property
    def delegate(self) -> str:
        return "gpu" if self.gpu else "nnapi" if self.nnapi else "xnnpack" if self.xnnpack else "none"

    @classmethod
    def from_options(cls, name: str, source: str, threads: int, opts: dict[str, Any]) -> AndroidConfig:
        def bad(field: str, why: str) -> DeviceError:
            return DeviceError(f"device descriptor {source}: field {field!r} {why}")

        transport = str(opts.get("transport", "")).lower()
        if transport == "usb":
            serial = _expand(opts.get("serial")) or os.environ.get("ANDROID_SERIAL") or None
            target = Target("usb", serial=serial)
        elif transport == "tcp":
            address = _expand(opts.get("address"))
            m = re.fullmatch(r"\[?([^\]]+?)\]?:(\d{1,5})", address or "")
            if not m:
                raise bad("address", f"must be HOST:PORT for transport tcp, got {opts.get('address')!r}")
            target = Target("tcp", host=m.group(1), port=int(m.group(2)))
        else:
            raise bad("transport", f"must be 'usb' or 'tcp', got {opts.get('transport')!r}")

        mask_text = cpu_mask(opts.get("cpu_mask"), bad)
        zones, cool = thermal(opts, bad, "cpu*")

        remote = str(opts.get("remote_dir") or DEFAULT_REMOTE_DIR).rstrip("/")
        if not remote.startswith("/") or remote in ("", "/data/local/tmp", "/sdcard", "/data"):
            raise bad("remote_dir", f"must be an absolute folder of its own, e.g. {DEFAULT_REMOTE_DIR}, got {remote!r}")

        binary = _expand(opts.get("benchmark_binary"))
        if not binary:
            raise bad("benchmark_binary", "is missing: give the host path of TFLite's benchmark_model for the phone")

        nums = numbers(opts, bad, (("cooldown_timeout_seconds", 600.0, 0), ("cooldown_poll_seconds", 5.0, 0),
                                   ("connect_timeout_seconds", 10.0, 0.1), ("auth_timeout_seconds", 30.0, 0.1),
                                   ("reconnect_delay_seconds", 2.0, 0)))
        attempts = int(opts.get("reconnect_attempts", 3))
        if attempts < 0:
            raise bad("reconnect_attempts", "must be >= 0")
        switches = delegate_switches(opts, bad)

        return cls(
            name=name, source=source, target=target, adb_key=Path(_expand(opts.get("adb_key")) or DEFAULT_KEY),
            cpu_mask=mask_text, threads=threads, benchmark_binary=Path(binary), remote_dir=remote,
            thermal_zones=zones, cooldown_celsius=cool,
            **switches, op_profiling=bool(opts.get("op_profiling", False)),
            fixed_performance_mode=bool(opts.get("fixed_performance_mode", False)),
            keep_files=bool(opts.get("keep_files", False)), reconnect_attempts=attempts, **nums,
        )


def delegate_switches(opts: dict[str, Any], bad: Any) -> dict[str, bool]:
    """benchmark_model's delegate switches from ``delegate`` (xnnpack, none, gpu, nnapi), or from the older
    booleans ``xnnpack``/``gpu``/``nnapi``; a boolean that contradicts ``delegate`` is an error naming both."""
    if opts.get("delegate") is None:
        return {"xnnpack": bool(opts.get("xnnpack", True)), "gpu": bool(opts.get("gpu", False)),
                "nnapi": bool(opts.get("nnapi", False))}
    delegate = str(opts["delegate"]).lower()
    if delegate not in DELEGATES:
        raise bad("delegate", f"must be one of {', '.join(DELEGATES)}, got {opts['delegate']!r}")
    switches = {name: delegate == name for name in ("xnnpack", "gpu", "nnapi")}
    for name, on in switches.items():
        if name in opts and bool(opts[name]) != on:
            raise bad(name, f"({opts[name]!r}) contradicts delegate {delegate!r}; drop {name!r}")
    return switches


def elf_abi(path: Path, source: str = "the device descriptor") -> str | None:
    """The Android ABI an ELF executable is built for; None for a script (``#!``); DeviceError for anything else."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except FileNotFoundError:
        raise DeviceError(
            f"benchmark binary {path} does not exist: download TFLite's benchmark_model for the phone's ABI "
            f"(see docs/android.md) and set benchmark_binary in {source}") from None
    except OSError as e:
        raise DeviceError(f"benchmark binary {path} cannot be read: {e.strerror}") from None
    if head.startswith(b"#!"):
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF":
        raise DeviceError(f"benchmark binary {path} is not an executable (no ELF header): download benchmark_model "
                          f"for the phone's ABI (see docs/android.md) and set benchmark_binary in {source}")
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    return ELF_ABIS.get(machine, f"unknown (ELF machine {machine})")
