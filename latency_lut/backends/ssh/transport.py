"""The system OpenSSH client: one-shot remote commands, and the runner as one long-lived SSH session.

The system ``ssh`` is used rather than a Python SSH library so that a board is reached exactly as the user reaches
it from a terminal: their ``~/.ssh/config`` (aliases, ``ProxyJump``, ``Match`` blocks), agent, security keys and
``known_hosts`` all apply, with no second trust store to keep in step. ``BatchMode`` is always on: a build never
stops at a password prompt, it fails with the fix instead.

Every word sent to the remote shell is quoted (:func:`quote`); ssh joins its command arguments with spaces and
hands the string to the login shell, so an unquoted path would be shell syntax.
"""

from __future__ import annotations

import json
import queue
import shlex
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from latency_lut.backends.ssh.config import SshTarget
from latency_lut.errors import DeviceError

# ssh's own exit status for "could not connect / the connection failed"; anything else is the remote command's.
SSH_FAILED = 255
# Keepalives: a board that vanishes (power, Wi-Fi) is noticed in ~15 s instead of at the TCP timeout.
_KEEPALIVE = ("-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3")


class ConnectionLost(Exception):
    """The SSH connection failed or dropped: worth a reconnect, unlike a login the board refuses."""


def quote(*words: object) -> str:
    """A shell command from words, each quoted so that no path or name can inject shell syntax."""
    return " ".join(shlex.quote(str(w)) for w in words)


def ssh_argv(target: SshTarget, command: str) -> list[str]:
    """The ssh command line running ``command`` (already quoted) on the board."""
    argv = ["ssh"]
    if target.ssh_config is not None:
        argv += ["-F", str(target.ssh_config)]
    if target.identity_file is not None:
        argv += ["-i", str(target.identity_file)]
    for o in target.options:
        argv += ["-o", o]
    argv += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, round(target.connect_timeout))}", *_KEEPALIVE,
             "-T"]
    if target.port is not None:
        argv += ["-p", str(target.port)]
    if target.user is not None:
        argv += ["-l", target.user]
    return [*argv, "--", target.host, command]  # "--": the host can never be read as an option


def login_failure(target: SshTarget, stderr: str, source: str) -> Exception:
    """The error for ssh's exit status 255: a DeviceError with the fix, or ConnectionLost when a retry may help."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip() and not ln.startswith("Warning:")]
    last = lines[-1] if lines else "no message from ssh"
    low = stderr.lower()
    where = target.describe()
    if "permission denied" in low or "too many authentication failures" in low:
        return DeviceError(f"the board {where} refused the login ({last}): set up key login (ssh-copy-id "
                           f"{where.split(':')[0]}) or load your key into ssh-agent, and check `ssh {target.host} "
                           f"true` works without a password (see docs/ssh.md)")
    if "host key verification failed" in low or "remote host identification has changed" in low:
        return DeviceError(f"the host key of {where} is not in known_hosts or has changed ({last}): connect once "
                           f"with `ssh {target.host}` and check the fingerprint, then rerun")
    if "could not resolve hostname" in low or "bad configuration option" in low or "no such file" in low \
            or "bad port" in low or "terminating" in low and "error" in low:
        return DeviceError(f"ssh cannot reach {where} as configured ({last}): fix 'host' or 'ssh_config' in "
                           f"{source}")
    return ConnectionLost(f"ssh to {where} failed: {last}")


def run(target: SshTarget, command: str, *, source: str, stdin: bytes | None = None,
        timeout: float = 120.0) -> subprocess.CompletedProcess[bytes]:
    """Run one quoted command on the board; raises for a failed connection, returns for any remote exit code."""
    try:
        proc = subprocess.run(ssh_argv(target, command), input=stdin if stdin is not None else b"",
                              capture_output=True, timeout=timeout)
    except FileNotFoundError:
        raise DeviceError("the OpenSSH client `ssh` is not installed on this machine: install it "
                          "(Debian/Ubuntu: apt-get install openssh-client)") from None
    except subprocess.TimeoutExpired:
        raise ConnectionLost(f"ssh to {target.describe()} did not answer within {timeout:.0f} s") from None
    if proc.returncode == SSH_FAILED:
        raise login_failure(target, proc.stderr.decode(errors="replace"), source)
    return proc


class RunnerSession:
    """The runner as one ssh process: JSON requests on its stdin, JSON lines back on its stdout.

    A reader thread turns stdout into a queue of decoded lines, so every wait has a timeout and a dropped connection
    is seen as the end of the stream rather than a hang.
    """

    def __init__(self, target: SshTarget, command: str, *, source: str) -> None:
        self.target = target
        self.source = source
        try:
            self.proc = subprocess.Popen(ssh_argv(target, command), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, bufsize=0)
        except FileNotFoundError:
            raise DeviceError("the OpenSSH client `ssh` is not installed on this machine: install it "
                              "(Debian/Ubuntu: apt-get install openssh-client)") from None
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=20)
        self._next_id = 0
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                self._stderr.append(raw.decode(errors="replace").rstrip())  # stray output: kept for messages
                continue
            if isinstance(msg, dict):
                self._lines.put(msg)
        self._lines.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self._stderr.append(raw.decode(errors="replace").rstrip())

    @property
    def stderr_text(self) -> str:
        return "\n".join(self._stderr)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def _ended(self) -> Exception:
        """Why the stream ended: the login refused, the connection lost, or the remote command failed."""
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        if code == SSH_FAILED:
            return login_failure(self.target, self.stderr_text, self.source)
        tail = " | ".join(self.stderr_text.strip().splitlines()[-3:])
        return ConnectionLost(f"the runner on {self.target.describe()} stopped (exit {code})"
                              + (f": {tail}" if tail else ""))

    def next(self, timeout: float) -> dict[str, Any]:
        try:
            msg = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise ConnectionLost(f"no answer from {self.target.describe()} within {timeout:.0f} s") from None
        if msg is None:
            self._lines.put(None)  # stays ended for any later read
            raise self._ended()
        return msg

    def request(self, req: dict[str, Any], timeout: float) -> Iterator[dict[str, Any]]:
        """Send one request; yield its reply lines until the final one (which has no ``samples``)."""
        self._next_id += 1
        rid = self._next_id
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write((json.dumps({**req, "id": rid}) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._ended() from None
        deadline = time.monotonic() + timeout
        while True:
            msg = self.next(max(0.1, deadline - time.monotonic()))
            if msg.get("id") != rid:
                continue  # a late answer to a request given up on
            yield msg
            if "samples" not in msg:
                return

    def call(self, req: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request and return its final reply."""
        return list(self.request(req, timeout))[-1]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def close(self, timeout: float = 10.0) -> None:
        """Ask the runner to exit (it restores the governor), then end the ssh process."""
        if self.alive:
            try:
                self.call({"cmd": "bye"}, timeout)
            except (ConnectionLost, DeviceError):
                pass
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=timeout)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()
