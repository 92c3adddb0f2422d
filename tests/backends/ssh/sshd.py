"""A real OpenSSH server on loopback as the stand-in board: its own host key, user key, sshd_config and client config.

Started with Debian's ``/usr/sbin/sshd -D`` on a free high port, listening on 127.0.0.1 only, accepting only the
generated user key. The client side is a ``~/.ssh/config``-like file, passed to ssh with ``-F``, that names the board
``board`` and pins its host key in a private known_hosts. The machine running the tests is the board.
"""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (the per-connection sshd processes and the commands they run)."""
    parents: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in parents.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


class LoopbackSshd:
    """``with LoopbackSshd(folder) as sshd:`` a running server; ``sshd.client_config`` for ``ssh -F``."""

    def __init__(self, folder: Path, *, accept_env: tuple[str, ...] = ("FBNET_LUT_SYSFS",)) -> None:
        self.dir = Path(folder)
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self.user = getpass.getuser()
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.accept_env = accept_env
        for name in ("host_key", "client_key"):
            if not (self.dir / name).exists():
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"fbnet-lut-test-{name}",
                                "-f", str(self.dir / name)], check=True)
        (self.dir / "authorized_keys").write_text((self.dir / "client_key.pub").read_text())
        self.write_configs()

    @property
    def client_config(self) -> Path:
        return self.dir / "ssh_config"

    def write_configs(self, set_env: dict[str, str] | None = None) -> None:
        d = self.dir
        (d / "sshd_config").write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {d / 'host_key'}", f"PidFile {d / 'sshd.pid'}",
            f"AuthorizedKeysFile {d / 'authorized_keys'}", "PubkeyAuthentication yes",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
            "PermitRootLogin prohibit-password", f"AllowUsers {self.user}",
            *(f"AcceptEnv {e}" for e in self.accept_env), "LogLevel ERROR", "",
        ]))
        host_pub = (d / "host_key.pub").read_text().split()
        (d / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        lines = [
            "Host board", "  HostName 127.0.0.1", f"  Port {self.port}", f"  User {self.user}",
            f"  IdentityFile {d / 'client_key'}", "  IdentitiesOnly yes", f"  UserKnownHostsFile {d / 'known_hosts'}",
            "  StrictHostKeyChecking yes", "  IdentityAgent none", "  LogLevel ERROR",
        ]
        lines += [f"  SetEnv {k}={v}" for k, v in (set_env or {}).items()]
        self.client_config.write_text("\n".join(lines) + "\n")

    def start(self) -> LoopbackSshd:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege separation folder
        self.proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(self.dir / "sshd_config")],
                                     stdout=subprocess.DEVNULL, stderr=open(self.dir / "sshd.log", "ab"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.dir / 'sshd.log').read_text()[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(8).startswith(b"SSH-"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start listening")

    def drop_connections(self) -> int:
        """Kill every open session (the listener keeps accepting): a dropped connection. Returns how many."""
        assert self.proc is not None
        kids = _children(self.proc.pid)
        for pid in reversed(kids):  # the commands first: SIGKILLed, they get no chance to clean up
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(kids)

    def stop(self) -> None:
        """The server gone: the listener and every session it started."""
        if self.proc is None:
            return
        self.drop_connections()
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> LoopbackSshd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
