"""Talking to a phone with adb-shell (no adb server): connect, run shell commands with exit codes, push files.

Every failure a user can fix becomes a one-line :class:`DeviceError` naming the cause and the fix: no phone, an
unanswered authorization prompt, a phone held by a running adb server, a full phone. A connection that drops is
re-opened and the operation repeated (shell commands and pushes here are idempotent); when the reconnects fail too,
the error says the store is intact and the same command resumes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from latency_lut.errors import DeviceError

log = logging.getLogger(__name__)
T = TypeVar("T")

# Appended to every command: the legacy shell service reports no exit status, so the command prints its own.
_RC_MARK = "__FBNET_LUT_RC="
_RC_TAIL = re.compile(r"\n" + _RC_MARK + r"(\d+)\n?$")


@dataclass(frozen=True)
class Target:
    """Where the phone is: ``usb`` (optionally one serial) or ``tcp`` with host and port."""

    transport: str
    serial: str | None = None
    host: str | None = None
    port: int = 5555

    def describe(self) -> str:
        if self.transport == "tcp":
            return f"phone at {self.host}:{self.port}"
        return f"USB phone {self.serial}" if self.serial else "the USB phone"


@dataclass(frozen=True)
class ShellResult:
    output: str
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class CommandTimeout(DeviceError):
    """A device command ran longer than its time limit (the connection itself was fine)."""


def quote(*parts: object) -> str:
    """A shell command from words, each quoted so that no path or name can inject shell syntax."""
    return " ".join(shlex.quote(str(p)) for p in parts)


def load_or_create_key(path: Path) -> Any:
    """The ADB RSA signer for ``path``; the key pair is created on first use (private key 0600, folder 0700)."""
    from adb_shell.auth.keygen import keygen
    from adb_shell.auth.sign_pythonrsa import PythonRSASigner

    path = Path(path).expanduser()
    if not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            old = os.umask(0o077)  # the private key must never exist with wider permissions, even briefly
            try:
                keygen(str(path))
            finally:
                os.umask(old)
            os.chmod(path, 0o600)
            os.chmod(f"{path}.pub", 0o644)
        except OSError as e:
            raise DeviceError(f"cannot create the ADB key {path}: {e.strerror}; set adb_key to a writable path") from e
        log.info("created ADB key %s", path)
    try:
        return PythonRSASigner.FromRSAKeyPath(str(path))
    except FileNotFoundError:
        raise DeviceError(f"ADB key {path} has no public half {path}.pub; delete {path} to make a new pair") from None
    except Exception as e:  # a corrupt PEM raises anything from the rsa package
        raise DeviceError(f"ADB key {path} cannot be read ({type(e).__name__}); delete it to make a new pair") from e


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the link failed (and a reconnect may help), as opposed to a failed command."""
    from adb_shell import exceptions as ex

    return (OSError, ex.TcpTimeoutException, ex.AdbTimeoutError, ex.InvalidResponseError, ex.InvalidChecksumError,
            ex.InvalidCommandError, ex.AdbConnectionError, ex.UsbReadFailedError, ex.UsbWriteFailedError)


def _tcp_device(host: str, port: int, timeout: float) -> Any:
    from adb_shell.adb_device import AdbDevice
    from adb_shell.transport.tcp_transport import TcpTransport

    class EofAwareTcpTransport(TcpTransport):
        """adb-shell retries an empty read until its read timeout; a closed socket is a dropped link, say so now."""

        def bulk_read(self, numbytes: int, transport_timeout_s: float | None) -> bytes:
            data = super().bulk_read(numbytes, transport_timeout_s)
            if not data:
                raise ConnectionResetError(f"{host}:{port} closed the connection")
            return data

    return AdbDevice(EofAwareTcpTransport(host, port), default_transport_timeout_s=timeout)


class AdbSession:
    """One phone over adb-shell, connected on first use and reconnected when the link drops."""

    def __init__(self, target: Target, key_path: Path, *, connect_timeout: float = 10.0, auth_timeout: float = 30.0,
                 reconnect_attempts: int = 3, reconnect_delay: float = 2.0, key_hint: str = "") -> None:
        self.target = target
        self.key_path = Path(key_path).expanduser()
        self.connect_timeout = connect_timeout
        self.auth_timeout = auth_timeout
        self.reconnect_attempts = reconnect_attempts
        self.reconnect_delay = reconnect_delay
        self.key_hint = key_hint
        self._device: Any = None
        self._signer: Any = None
        self.reconnects = 0

    # ---- connecting ----------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._device is not None

    def connect(self) -> None:
        if self._device is not None:
            return
        if self._signer is None:
            self._signer = load_or_create_key(self.key_path)
        device = self._new_device()
        prompted: list[bool] = []
        try:
            device.connect(rsa_keys=[self._signer], transport_timeout_s=self.connect_timeout,
                           auth_timeout_s=self.auth_timeout, auth_callback=lambda _dev: prompted.append(True))
        except Exception as e:
            with contextlib.suppress(Exception):
                device.close()
            raise self._connect_error(e, bool(prompted)) from e
        self._device = device

    def _new_device(self) -> Any:
        t = self.target
        if t.transport == "tcp":
            return _tcp_device(str(t.host), t.port, self.connect_timeout)
        from adb_shell import exceptions as ex
        from adb_shell.adb_device import AdbDeviceUsb

        try:
            return AdbDeviceUsb(serial=t.serial, default_transport_timeout_s=self.connect_timeout)
        except ex.InvalidTransportError:
            raise DeviceError("USB phones need adb-shell's USB support: pip install 'fbnet-lut[usb]' "
                              "(or use ADB over Wi-Fi: transport: tcp with address HOST:PORT)") from None
        except Exception as e:
            raise self._connect_error(e, False) from e

    def _connect_error(self, e: BaseException, prompted: bool) -> DeviceError:
        t = self.target
        what = t.describe()
        name = type(e).__name__
        text = f"{name}: {e}".lower()
        if prompted:
            return DeviceError(
                f"{what} did not authorize this computer within {self.auth_timeout:g} s: unlock it, accept the "
                f"'Allow USB debugging?' prompt for key {self.key_path}.pub (tick 'Always allow'), then rerun")
        if "busy" in text or "resource busy" in text:
            return DeviceError(f"{what} is held by a running adb server: run 'adb kill-server' and rerun")
        if ("access" in text and "usb" in text) or "permission" in text:
            return DeviceError(f"no permission to open {what}: add a udev rule for it (see docs/android.md) "
                               "or run as a user in the plugdev group")
        if t.transport == "usb" and ("usbdevicenotfound" in text or "no device" in text or "not found" in text):
            serial = f" with serial {t.serial}" if t.serial else ""
            return DeviceError(f"no phone{serial} found on USB: plug it in, enable USB debugging in Developer "
                               "options, and check it is listed by 'lsusb'")
        if isinstance(e, ConnectionRefusedError):
            return DeviceError(f"nothing accepts ADB connections at {t.host}:{t.port}: check the address and "
                               "enable ADB over Wi-Fi on the phone ('adb tcpip 5555' or Wireless debugging)")
        if "timed out" in text or "timeout" in text:
            return DeviceError(f"{what} did not answer within {self.connect_timeout:g} s: check that it is on "
                               "and reachable, then rerun")
        return DeviceError(f"cannot connect to {what} ({name}: {e}); check the transport in the device descriptor")

    def close(self) -> None:
        if self._device is not None:
            with contextlib.suppress(Exception):
                self._device.close()
        self._device = None

    # ---- retrying ------------------------------------------------------------------------------------------
    def _retrying(self, what: str, fn: Callable[[Any], T], attempts: int | None = None) -> T:
        """Run ``fn(device)``; on a dropped link, reconnect and run it again, up to ``reconnect_attempts`` times."""
        errors = _transport_errors()
        attempts = self.reconnect_attempts if attempts is None else attempts
        last: BaseException | None = None
        for attempt in range(attempts + 1):
            if attempt:
                self.reconnects += 1
                log.warning("connection to %s lost during %s (%s); reconnecting (%d/%d)", self.target.describe(),
                            what, last, attempt, attempts)
                time.sleep(self.reconnect_delay)
            try:
                self.connect()
            except DeviceError as e:
                if attempt == 0:
                    raise  # the phone was never reachable: the user's to fix, no point in retrying
                last = e
                continue
            try:
                return fn(self._device)  # a DeviceError from here (a full phone, a timeout) is final
            except errors as e:
                last = e
                self.close()
        raise DeviceError(
            f"lost the connection to {self.target.describe()} during {what} ({type(last).__name__}: {last}) and "
            f"{attempts} reconnect(s) failed; every op measured so far is in the store: reconnect the phone and "
            "rerun the same command to resume")

    # ---- commands ------------------------------------------------------------------------------------------
    def shell(self, command: str, *, timeout: float = 60.0, what: str | None = None,
              attempts: int | None = None) -> ShellResult:
        """Run ``command`` with ``sh`` on the phone; its stdout and stderr together, and its exit status."""
        from adb_shell import exceptions as ex

        wrapped = f"( {command}\n) 2>&1; printf '\\n{_RC_MARK}%d\\n' \"$?\""

        def run(device: Any) -> ShellResult:
            try:
                text = device.shell(wrapped, transport_timeout_s=max(timeout, self.connect_timeout),
                                    read_timeout_s=timeout, timeout_s=timeout, decode=False)
            except ex.AdbTimeoutError as e:
                if "did not complete within" in str(e):
                    raise CommandTimeout(f"{what or 'a command'} did not finish within {timeout:g} s on "
                                         f"{self.target.describe()}") from e
                raise
            out = bytes(text).decode("utf-8", "replace").replace("\r\n", "\n")
            m = _RC_TAIL.search(out)
            if m is None:  # output cut off before our marker: the link broke mid-command
                raise ConnectionResetError("the command's output ended early")
            return ShellResult(out[: m.start()], int(m.group(1)))

        return self._retrying(what or command.split()[0], run, attempts)

    def check(self, command: str, *, what: str, timeout: float = 60.0) -> str:
        """Run ``command``; a non-zero exit is a DeviceError quoting the phone's output."""
        res = self.shell(command, timeout=timeout, what=what)
        if not res.ok:
            tail = " | ".join(res.output.strip().splitlines()[-3:]) or "no output"
            raise DeviceError(f"{what} failed on {self.target.describe()} (exit {res.exit_code}): {tail}")
        return res.output

    def push(self, local: Path, remote: str, *, mode: int = 0o644, what: str | None = None) -> None:
        """Copy ``local`` to ``remote``; a full phone or unwritable folder is a DeviceError naming the fix."""
        import stat as _stat

        from adb_shell import exceptions as ex

        local = Path(local)
        size = local.stat().st_size

        def run(device: Any) -> None:
            try:
                device.push(str(local), remote, st_mode=_stat.S_IFREG | mode, read_timeout_s=max(60.0, size / 1e6))
            except (ex.PushFailedError, ex.AdbCommandFailureException) as e:
                reason = _fail_text(e)
                if "no space" in reason.lower() or "enospc" in reason.lower():
                    raise DeviceError(
                        f"the phone is full: pushing {local.name} ({size / 1024:.0f} KiB) to {remote} failed "
                        f"({reason}); free some storage on it, or set remote_dir to a partition with room") from None
                raise DeviceError(f"pushing {local.name} to {remote} failed on {self.target.describe()}: {reason}; "
                                  "check that remote_dir is writable (e.g. under /data/local/tmp)") from None

        self._retrying(what or f"push of {local.name}", run)


def _fail_text(e: BaseException) -> str:
    arg = e.args[0] if e.args else e
    if isinstance(arg, (bytes, bytearray)):
        arg = bytes(arg).decode("utf-8", "replace")
    return str(arg).removeprefix("Command failed: ").strip()
