"""An SSH board descriptor's fields, checked and normalized (the generic loader has checked names and types)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latency_lut.device_fields import cpu_mask, expand, numbers, thermal
from latency_lut.errors import DeviceError

# Relative to the login's home folder on the board (an SSH command starts there), so no `~` needs expanding.
DEFAULT_REMOTE_DIR = ".cache/fbnet-lut"
LITERT_MODULES = ("auto", "tflite_runtime", "ai_edge_litert")
OPTIMIZATIONS = ("none", "basic", "extended", "all")


@dataclass(frozen=True)
class SshTarget:
    """Where the board is and how to log in; everything else comes from the user's own SSH setup."""

    host: str
    port: int | None = None
    user: str | None = None
    ssh_config: Path | None = None
    identity_file: Path | None = None
    options: tuple[str, ...] = ()
    connect_timeout: float = 10.0

    def describe(self) -> str:
        who = f"{self.user}@" if self.user else ""
        return f"{who}{self.host}" + (f":{self.port}" if self.port else "")


@dataclass(frozen=True)
class SshConfig:
    """Everything the SSH backend needs from a descriptor."""

    name: str
    source: str
    target: SshTarget
    threads: int
    python: str = "python3"
    litert_module: str = "auto"
    cpu_mask: str | None = None
    governor: str | None = None
    thermal_zones: tuple[int | str, ...] = ()
    cooldown_celsius: float | None = None
    cooldown_timeout_seconds: float = 600.0
    cooldown_poll_seconds: float = 5.0
    remote_dir: str = DEFAULT_REMOTE_DIR
    keep_files: bool = True
    xnnpack: bool = True
    optimization: str = "all"
    reconnect_attempts: int = 3
    reconnect_delay_seconds: float = 2.0

    @classmethod
    def from_options(cls, name: str, source: str, threads: int, opts: dict[str, Any]) -> SshConfig:
        def bad(field: str, why: str) -> DeviceError:
            return DeviceError(f"device descriptor {source}: field {field!r} {why}")

        host_text = expand(opts.get("host")) or ""
        port = opts.get("port")
        m = re.fullmatch(r"\[([^\]]+)\]:(\d{1,5})|([^:\[\]]+):(\d{1,5})", host_text)
        if m:  # host:port, or [v6]:port
            host_text, port_text = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
            if port is not None and int(port_text) != port:
                raise bad("port", f"is {port} but 'host' says port {port_text}; give it once")
            port = int(port_text)
        user = expand(opts.get("user"))
        if "@" in host_text and user is None:
            user, host_text = host_text.rsplit("@", 1)
        # A host starting with '-' would be read by ssh as an option (e.g. -oProxyCommand=...).
        if not host_text or host_text.startswith("-") or re.search(r"[\s'\"`$;&|<>\\]", host_text):
            raise bad("host", f"must be an alias from your ~/.ssh/config, a host name or HOST:PORT, got "
                              f"{opts.get('host')!r}")
        if user is not None and (user.startswith("-") or not re.fullmatch(r"[A-Za-z0-9._][A-Za-z0-9._-]*", user)):
            raise bad("user", f"must be a login name, got {opts.get('user')!r}")
        if port is not None and not 1 <= int(port) <= 65535:
            raise bad("port", f"must be between 1 and 65535, got {port}")
        options = []
        for o in opts.get("ssh_options") or ():
            if not isinstance(o, str) or not re.fullmatch(r"[A-Za-z]+[ =]\S.*", o):
                raise bad("ssh_options", f"lists ssh -o settings such as \"ServerAliveInterval=5\", got {o!r}")
            options.append(o)
        ssh_config = expand(opts.get("ssh_config"))
        if ssh_config and not Path(ssh_config).is_file():
            raise bad("ssh_config", f"names {ssh_config}, which does not exist")
        identity = expand(opts.get("identity_file"))
        if identity and not Path(identity).is_file():
            raise bad("identity_file", f"names {identity}, which does not exist")

        nums = numbers(opts, bad, (("cooldown_timeout_seconds", 600.0, 0), ("cooldown_poll_seconds", 5.0, 0),
                                   ("connect_timeout_seconds", 10.0, 1), ("reconnect_delay_seconds", 2.0, 0)))
        target = SshTarget(host_text, int(port) if port is not None else None, user,
                           Path(ssh_config) if ssh_config else None, Path(identity) if identity else None,
                           tuple(options), nums.pop("connect_timeout_seconds"))

        # Paths on the board: host $VARS expanded (one descriptor for several boards), `~` left for the board.
        python = os.path.expandvars(str(opts.get("python") or "python3"))
        litert_module = str(opts.get("litert_module") or "auto")
        if litert_module not in LITERT_MODULES:
            raise bad("litert_module", f"must be one of {', '.join(LITERT_MODULES)}, got {litert_module!r}")
        optimization = str(opts.get("optimization") or "all")
        if optimization not in OPTIMIZATIONS:
            raise bad("optimization", f"must be one of {', '.join(OPTIMIZATIONS)}, got {optimization!r}")

        mask_text = cpu_mask(opts["cpu_mask"], bad) if opts.get("cpu_mask") is not None else None
        governor = opts.get("governor") or None
        if governor is not None and not re.fullmatch(r"[a-z0-9_]+", governor):
            raise bad("governor", f"must be a cpufreq governor name such as 'performance', got {governor!r}")

        zones, cool = thermal(opts, bad, "cpu-thermal")

        remote = os.path.expandvars(str(opts.get("remote_dir") or DEFAULT_REMOTE_DIR)).rstrip("/")
        if remote in ("", ".", "/", "/tmp", "/home", "/root", "~") or remote.startswith("~"):
            raise bad("remote_dir", f"must be a folder of its own, absolute or relative to the login's home "
                                    f"(e.g. {DEFAULT_REMOTE_DIR}), got {remote!r}")
        attempts = int(opts.get("reconnect_attempts", 3))
        if attempts < 0:
            raise bad("reconnect_attempts", "must be >= 0")
        return cls(
            name=name, source=source, target=target, threads=threads, python=python, litert_module=litert_module,
            cpu_mask=mask_text, governor=governor, thermal_zones=zones,
            cooldown_celsius=cool, remote_dir=remote,
            keep_files=bool(opts.get("keep_files", True)), xnnpack=bool(opts.get("xnnpack", True)),
            optimization=optimization, reconnect_attempts=attempts, **nums,
        )

