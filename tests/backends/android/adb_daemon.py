"""A phone for the tests: an ADB daemon on loopback that speaks the real ADB wire protocol.

It is a protocol peer, not a mock: any ADB host (adb-shell, or Debian's real ``adb`` client/server) connects to it,
authenticates with its RSA key, opens services and moves files exactly as with a phone.

* Transport messages: CNXN, AUTH (token -> signature, or public key -> "prompt accepted"), OPEN, OKAY, WRTE, CLSE,
  with one OKAY per WRTE as flow control, and checksums on what it sends.
* ``shell:CMD`` / ``exec:CMD``: runs CMD with ``/bin/sh`` in a subprocess, stdout and stderr merged (the legacy,
  exit-code-less shell service). ``/data/local/tmp`` and ``/sys`` are mapped to folders under the daemon's root, and
  ``getprop``, ``cmd`` and ``dumpsys`` are small stand-ins on its PATH.
* ``sync:``: STAT, LIST, SEND (with an optional storage quota that fails like a full phone), RECV, DONE, QUIT.

Test hooks: ``authorize_new_keys=False`` leaves the "Allow USB debugging?" prompt unanswered; ``shell_hook`` sees
every shell command and may answer ``"drop"`` (cut the connection, like a pulled cable) or ``"offline"`` (cut it
and stop listening until :meth:`AdbDaemon.come_back`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import re
import secrets
import shutil
import socket
import stat
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils


def _wire(name: bytes) -> int:
    return int.from_bytes(name, "little")


CNXN, AUTH, OPEN, OKAY, WRTE, CLSE = (_wire(n) for n in (b"CNXN", b"AUTH", b"OPEN", b"OKAY", b"WRTE", b"CLSE"))
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
A_VERSION, A_VERSION_SKIP_CHECKSUM = 0x01000000, 0x01000001
MAX_PAYLOAD = 256 * 1024
SYNC_DATA_MAX = 64 * 1024

HERE = Path(__file__).resolve().parent
DEFAULT_PROPS = {
    "ro.product.model": "Loopback Phone",
    "ro.product.manufacturer": "fbnet-lut",
    "ro.product.name": "loopback",
    "ro.product.device": "loopback",
    "ro.soc.manufacturer": "host",
    "ro.soc.model": "HostCPU",
    "ro.board.platform": "loopback",
    "ro.hardware": "loopback",
    "ro.build.version.release": "14",
    "ro.build.version.sdk": "34",
    "ro.build.fingerprint": "fbnet-lut/loopback/loopback:14/TEST/1:userdebug/test-keys",
    "ro.product.cpu.abi": "x86_64",
    "ro.product.cpu.abilist": "x86_64,x86",
}


def encode(cmd: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    return struct.pack("<6I", cmd, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, cmd ^ 0xFFFFFFFF) + data


def parse_android_pubkey(blob: bytes) -> rsa.RSAPublicKey:
    """The public key of AUTH(RSAPUBLICKEY): base64 of Android's RSAPublicKey struct, then ' user@host'."""
    raw = base64.b64decode(blob.rstrip(b"\0").split()[0])
    words, _n0inv = struct.unpack_from("<II", raw)
    n = int.from_bytes(raw[8:8 + 4 * words], "little")
    (e,) = struct.unpack_from("<I", raw, 8 + 8 * words)
    return rsa.RSAPublicNumbers(e, n).public_key()


class _Dropped(Exception):
    """The connection went away (or the test cut it)."""


@dataclass
class _Stream:
    conn: _Connection
    our_id: int
    host_id: int
    inbox: queue.Queue = field(default_factory=queue.Queue)
    acked: threading.Event = field(default_factory=threading.Event)
    closed: bool = False

    def __post_init__(self) -> None:
        self.acked.set()

    def write(self, data: bytes) -> None:
        """WRTE in payload-sized chunks, waiting for the host's OKAY before each (ADB's flow control)."""
        for i in range(0, len(data), self.conn.max_payload):
            if not self.acked.wait(60) or self.closed:
                raise _Dropped("host stopped acknowledging")
            self.acked.clear()
            self.conn.send(WRTE, self.our_id, self.host_id, data[i:i + self.conn.max_payload])

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self.conn.send(CLSE, self.our_id, self.host_id)

    def read(self, timeout: float = 60) -> bytes:
        data = self.inbox.get(timeout=timeout)
        if data is None:
            raise _Dropped("stream closed by host")
        return data


class _Connection:
    """One host connection: the handshake, then a dispatcher thread with one worker thread per stream."""

    def __init__(self, daemon: AdbDaemon, sock: socket.socket) -> None:
        self.daemon = daemon
        self.sock = sock
        self.lock = threading.Lock()
        self.streams: dict[int, _Stream] = {}
        self.procs: set[subprocess.Popen] = set()
        self.max_payload = MAX_PAYLOAD
        self.online = False
        self.token = b""
        self.alive = True

    # ---- wire ----------------------------------------------------------------------------------------------
    def send(self, cmd: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        with self.lock:
            self.sock.sendall(encode(cmd, arg0, arg1, data))

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise _Dropped("host closed the connection")
            buf += chunk
        return bytes(buf)

    def _read_packet(self) -> tuple[int, int, int, bytes]:
        cmd, arg0, arg1, length, check, magic = struct.unpack("<6I", self._recv_exact(24))
        if magic != cmd ^ 0xFFFFFFFF:
            raise _Dropped("bad magic")
        data = self._recv_exact(length) if length else b""
        if check and check != sum(data) & 0xFFFFFFFF:  # hosts at A_VERSION_SKIP_CHECKSUM send 0
            raise _Dropped("bad checksum")
        return cmd, arg0, arg1, data

    def drop(self) -> None:
        """Cut the connection the way a pulled cable does: no CLSE, the socket just goes away."""
        self.alive = False
        for p in list(self.procs):
            with contextlib.suppress(OSError):
                p.kill()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()
        for s in list(self.streams.values()):
            s.closed = True
            s.acked.set()
            s.inbox.put(None)

    # ---- dispatcher ----------------------------------------------------------------------------------------
    def serve(self) -> None:
        try:
            while self.alive:
                self._dispatch(*self._read_packet())
        except (_Dropped, OSError):
            pass
        finally:
            self.drop()
            self.daemon._forget(self)

    def _dispatch(self, cmd: int, arg0: int, arg1: int, data: bytes) -> None:
        if cmd == CNXN:
            self.version = min(arg0, A_VERSION_SKIP_CHECKSUM)
            self.max_payload = min(arg1 or MAX_PAYLOAD, MAX_PAYLOAD)
            self.online = False
            self._send_token()
        elif cmd == AUTH:
            self._auth(arg0, data)
        elif not self.online:
            return  # real adbd ignores everything before the handshake completes
        elif cmd == OPEN:
            self._open(arg0, data.rstrip(b"\0").decode("utf-8", "replace"))
        elif cmd == OKAY:
            s = self.streams.get(arg1)
            if s:
                s.acked.set()
        elif cmd == WRTE:
            s = self.streams.get(arg1)
            if s:
                s.inbox.put(data)
                self.send(OKAY, s.our_id, s.host_id)
        elif cmd == CLSE:
            s = self.streams.pop(arg1, None)
            if s:
                # The host hung up first: answer with our CLSE (hosts wait for it), then stop the worker.
                s.close()
                s.acked.set()
                s.inbox.put(None)

    # ---- authentication ------------------------------------------------------------------------------------
    def _send_token(self) -> None:
        self.token = secrets.token_bytes(20)
        self.send(AUTH, AUTH_TOKEN, 0, self.token)

    def _auth(self, kind: int, data: bytes) -> None:
        if kind == AUTH_SIGNATURE:
            for key in list(self.daemon.trusted_keys):
                try:
                    key.verify(data, self.token, padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))
                except InvalidSignature:
                    continue
                return self._go_online()
            self._send_token()  # unknown key: ask again, the host then offers its public key
        elif kind == AUTH_RSAPUBLICKEY:
            self.daemon.prompts += 1
            if self.daemon.authorize_new_keys:  # the user taps "Allow" on the phone
                self.daemon.trusted_keys.append(parse_android_pubkey(data))
                self._go_online()
            # otherwise the prompt stays on screen and the host waits

    def _go_online(self) -> None:
        self.online = True
        props = self.daemon.props
        banner = (f"device::ro.product.name={props['ro.product.name']};ro.product.model={props['ro.product.model']};"
                  f"ro.product.device={props['ro.product.device']};features=")
        self.send(CNXN, self.version, MAX_PAYLOAD, banner.encode())

    # ---- services ------------------------------------------------------------------------------------------
    def _open(self, host_id: int, service: str) -> None:
        our_id = self.daemon._next_id()
        stream = _Stream(self, our_id, host_id)
        if service.startswith(("shell:", "exec:")):
            command = service.split(":", 1)[1]
            if not command:  # interactive shell: needs a pty, not offered here
                self.send(CLSE, 0, host_id)
                return
            self.daemon.commands.append(command)
            action = self.daemon.shell_hook(command) if self.daemon.shell_hook else None
            if action in ("drop", "offline"):
                if action == "offline":
                    self.daemon.go_offline()
                self.drop()
                return
            target = self._shell
            arg = command
        elif service == "sync:":
            target, arg = self._sync, ""
        else:
            self.send(CLSE, 0, host_id)
            return
        self.streams[our_id] = stream
        self.send(OKAY, our_id, host_id)
        threading.Thread(target=self._run_stream, args=(target, stream, arg), daemon=True).start()

    def _run_stream(self, target: Callable, stream: _Stream, arg: str) -> None:
        try:
            target(stream, arg)
        except (_Dropped, OSError, queue.Empty):
            pass
        finally:
            stream.close()

    def _shell(self, stream: _Stream, command: str) -> None:
        d = self.daemon
        proc = subprocess.Popen(
            ["/bin/sh", "-c", d.map_command(command)], cwd=d.root, env=d.shell_env(),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.procs.add(proc)
        try:
            assert proc.stdout is not None
            while True:
                chunk = proc.stdout.read1(self.max_payload) if hasattr(proc.stdout, "read1") else b""
                if not chunk:
                    break
                if stream.closed:
                    proc.kill()
                    break
                # Show the phone's paths, not where they are mapped on this host (best effort per chunk).
                stream.write(chunk.replace(str(d.root).encode(), b""))
            proc.wait()
        finally:
            self.procs.discard(proc)
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def _sync(self, stream: _Stream, _: str) -> None:
        reader = _SyncReader(stream)
        d = self.daemon
        while True:
            ident, length = struct.unpack("<4sI", reader.take(8))
            if ident == b"QUIT":
                return
            if ident not in (b"STAT", b"LIST", b"SEND", b"RECV"):
                return stream.write(_fail(f"unknown sync request {ident!r}"))
            arg = reader.take(length).decode("utf-8", "replace")
            if ident == b"STAT":
                stream.write(b"STAT" + _stat(d.map_path(arg)))
            elif ident == b"LIST":
                out = bytearray()
                host = d.map_path(arg)
                if host is not None and host.is_dir():
                    for entry in sorted(host.iterdir()):
                        name = entry.name.encode()
                        out += b"DENT" + _stat(entry) + struct.pack("<I", len(name)) + name
                stream.write(bytes(out) + b"DONE" + bytes(16))
            elif ident == b"SEND":
                self._receive_file(stream, reader, arg)
            else:
                host = d.map_path(arg)
                if host is None or not host.is_file():
                    stream.write(_fail(f"open failed: No such file or directory: {arg}"))
                    continue
                blob = host.read_bytes()
                out = bytearray()
                for i in range(0, len(blob), SYNC_DATA_MAX):
                    part = blob[i:i + SYNC_DATA_MAX]
                    out += b"DATA" + struct.pack("<I", len(part)) + part
                stream.write(bytes(out) + b"DONE" + bytes(4))

    def _receive_file(self, stream: _Stream, reader: _SyncReader, spec: str) -> None:
        path, _, mode_text = spec.rpartition(",")
        mode = int(mode_text) if mode_text.isdigit() else 0o644
        chunks: list[bytes] = []
        while True:
            ident, length = struct.unpack("<4sI", reader.take(8))
            if ident == b"DATA":
                chunks.append(reader.take(length))
            elif ident == b"DONE":
                break
            else:
                return stream.write(_fail(f"unexpected {ident!r} during SEND"))
        d = self.daemon
        host = d.map_path(path)
        blob = b"".join(chunks)
        if host is None:
            return stream.write(_fail(f"couldn't create file: Read-only file system: {path}"))
        if d.quota_bytes is not None and d.used_bytes() + len(blob) > d.quota_bytes:
            return stream.write(_fail(f"write failed: No space left on device: {path}"))
        try:
            host.parent.mkdir(parents=True, exist_ok=True)
            host.write_bytes(blob)
            os.chmod(host, stat.S_IMODE(mode) or 0o644)
        except OSError as e:
            return stream.write(_fail(f"couldn't write {path}: {e.strerror}"))
        d.sent.append(path)
        stream.write(b"OKAY" + bytes(4))


class _SyncReader:
    """Sync requests arrive split across WRTE packets in any way; this buffers them back together."""

    def __init__(self, stream: _Stream) -> None:
        self.stream = stream
        self.buf = bytearray()

    def take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.buf += self.stream.read()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


def _fail(message: str) -> bytes:
    data = message.encode()
    return b"FAIL" + struct.pack("<I", len(data)) + data


def _stat(path: Path | None) -> bytes:
    try:
        st = path.stat() if path is not None else None
    except OSError:
        st = None
    if st is None:
        return bytes(12)
    return struct.pack("<III", st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF, int(st.st_mtime) & 0xFFFFFFFF)


class AdbDaemon:
    """The loopback phone. ``with AdbDaemon(root) as d:`` listens on ``d.port`` (an ephemeral port, never 5555-5585)."""

    MAPPED = ("/data/local/tmp", "/sys")

    def __init__(self, root: Path, *, serial: str = "FBNETLOOP0001", props: dict[str, str] | None = None,
                 authorize_new_keys: bool = True, quota_bytes: int | None = None, cpus: int = 8,
                 temperatures_c: dict[str, float] | None = None) -> None:
        self.root = Path(root)
        self.serial = serial
        self.props = {**DEFAULT_PROPS, "ro.serialno": serial, **(props or {})}
        self.authorize_new_keys = authorize_new_keys
        self.quota_bytes = quota_bytes
        self.trusted_keys: list[rsa.RSAPublicKey] = []
        self.prompts = 0
        self.shell_hook: Callable[[str], str | None] | None = None
        self.commands: list[str] = []  # every shell command run, as the host sent it
        self.sent: list[str] = []  # every file pushed with sync SEND (device paths)
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: set[_Connection] = set()
        self._ids = 0
        self._id_lock = threading.Lock()
        self._build_tree(cpus, temperatures_c or {"cpu-big": 38.0, "cpu-little": 36.5, "battery": 30.0})

    # ---- the phone's filesystem ----------------------------------------------------------------------------
    def _build_tree(self, cpus: int, temps: dict[str, float]) -> None:
        (self.root / "data/local/tmp").mkdir(parents=True, exist_ok=True)
        self.set_temperatures(temps)
        for c in range(cpus):
            freq = self.root / f"sys/devices/system/cpu/cpu{c}/cpufreq"
            freq.mkdir(parents=True, exist_ok=True)
            (freq / "cpuinfo_max_freq").write_text(f"{2_800_000 if c >= cpus // 2 else 1_800_000}\n")
            (freq / "scaling_governor").write_text("schedutil\n")
        bindir = self.root / "bin"
        bindir.mkdir(exist_ok=True)
        (self.root / "props.json").write_text(json.dumps(self.props))
        for tool in ("getprop", "cmd", "dumpsys"):
            src = (HERE / "phone_tools.py").read_text()
            script = bindir / tool
            script.write_text(f"#!{sys.executable} -S\n" + src)
            script.chmod(0o755)

    def set_temperatures(self, temps: dict[str, float]) -> None:
        """Thermal zones by type, in degrees C (written as millidegrees, as the kernel does)."""
        base = self.root / "sys/class/thermal"
        same = base.exists() and sorted(p.name for p in base.iterdir()) == sorted(
            f"thermal_zone{i}" for i in range(len(temps)))
        if base.exists() and not same:
            shutil.rmtree(base)
        for i, (kind, celsius) in enumerate(temps.items()):
            zone = base / f"thermal_zone{i}"
            zone.mkdir(parents=True, exist_ok=True)
            for name, text in (("type", kind), ("temp", str(int(celsius * 1000)))):
                tmp = zone / f".{name}.tmp"
                tmp.write_text(text + "\n")
                os.replace(tmp, zone / name)  # a reader mid-change sees the old or the new value, never none

    @property
    def data_dir(self) -> Path:
        return self.root / "data/local/tmp"

    def map_path(self, device_path: str) -> Path | None:
        for prefix in self.MAPPED:
            if device_path == prefix or device_path.startswith(prefix + "/"):
                return self.root / prefix.lstrip("/") / device_path[len(prefix):].lstrip("/")
        return None

    def map_command(self, command: str) -> str:
        pattern = "|".join(re.escape(p) for p in self.MAPPED)
        return re.sub(rf"(?<![\w/.-])({pattern})(?=/|\b|$)", lambda m: str(self.root) + m.group(1), command)

    def shell_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{self.root / 'bin'}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        env["FBNET_PHONE_ROOT"] = str(self.root)
        return env

    def used_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.data_dir.rglob("*") if p.is_file())

    # ---- networking ----------------------------------------------------------------------------------------
    def start(self) -> AdbDaemon:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        port = self.port
        if not port:
            while True:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
                if not 5555 <= port <= 5585:  # the adb server probes that range for emulators
                    break
                sock.close()
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        else:
            sock.bind(("127.0.0.1", port))
        sock.listen(8)
        self.port = port
        self._listener = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, client)
            self._conns.add(conn)
            threading.Thread(target=conn.serve, daemon=True).start()

    def _forget(self, conn: _Connection) -> None:
        self._conns.discard(conn)

    def _next_id(self) -> int:
        with self._id_lock:
            self._ids += 1
            return self._ids

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def drop_connections(self) -> None:
        for c in list(self._conns):
            c.drop()

    def go_offline(self) -> None:
        """The phone vanishes: no more connections accepted, open ones cut."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept(); close() alone won't
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None
        self.drop_connections()

    def come_back(self) -> None:
        if self._listener is None:
            self.start()

    def stop(self) -> None:
        self.go_offline()

    def __enter__(self) -> AdbDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
