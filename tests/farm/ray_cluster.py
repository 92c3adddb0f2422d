"""A real Ray cluster on loopback for the farm tests: a head and worker nodes, each a host of the farm.

Each node is a ``ray start --block`` process in its own process group, given its host as a custom resource
(``host:NAME``) exactly as a lab machine joins a farm. :meth:`RayCluster.stop` ends those process groups (and only
them), so nothing the tests started outlives them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> list[str]:
    exe = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    return [exe]


class RayCluster:
    def __init__(self, hosts: list[str], cpus_per_node: int = 1) -> None:
        self.hosts = hosts
        self.cpus = cpus_per_node
        self.port = free_port()
        self.procs: list[subprocess.Popen] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="ray-t-"))  # short: Ray's socket paths must stay < 108 chars
        self.node_of_host: dict[str, str] = {}
        # Token authentication, as a lab cluster should have it: every node and driver holds the same token.
        self.token = secrets.token_hex(32)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        # Workers of the cluster import this checkout, as they would import the installed package on a lab host.
        return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}

    def driver_env(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` plus what a driver needs to join this cluster."""
        return {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token, "RAY_USAGE_STATS_ENABLED": "0"}

    def _start(self, args: list[str], host: str) -> None:
        log = open(self.tmp / f"{host}.log", "w")  # noqa: SIM115 - closed with the process
        self.procs.append(subprocess.Popen(
            [*_ray_cli(), "start", "--block", f"--num-cpus={self.cpus}", "--disable-usage-stats",
             "--resources", json.dumps({f"host:{host}": 100}), *args],
            env=self._env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    def start(self, timeout: float = 90) -> RayCluster:
        try:
            return self._start_all(timeout)
        except BaseException:
            self.stop()
            raise

    def _start_all(self, timeout: float) -> RayCluster:
        t0 = time.monotonic()
        self._start(["--head", f"--port={self.port}", "--node-ip-address=127.0.0.1", "--include-dashboard=false",
                     f"--temp-dir={self.tmp}"], self.hosts[0])
        self._wait_port(t0 + timeout)
        for host in self.hosts[1:]:
            self._start([f"--address={self.address}", "--node-ip-address=127.0.0.1"], host)
        self._wait_nodes(t0 + timeout)
        self.startup_seconds = time.monotonic() - t0
        return self

    def _wait_port(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.procs[0].poll() is not None:
                raise RuntimeError(f"ray head exited: {(self.tmp / (self.hosts[0] + '.log')).read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("ray head did not come up")

    def _wait_nodes(self, deadline: float) -> None:
        """Until every host's node is alive; records which node provides which host."""
        code = (f"import json, ray; ray.init(address={self.address!r}, logging_level='error'); "
                "print(json.dumps([[n['NodeID'], list(n['Resources'])] for n in ray.nodes() if n['Alive']]))")
        while time.monotonic() < deadline:
            out = subprocess.run([sys.executable, "-c", code], env=self._env(), capture_output=True, text=True,
                                 timeout=60)
            nodes = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else []
            self.node_of_host = {r[5:]: nid for nid, res in nodes for r in res if r.startswith("host:")}
            if set(self.node_of_host) >= set(self.hosts):
                return
            time.sleep(0.5)
        raise RuntimeError(f"ray nodes did not all join: {self.node_of_host}")

    def stop(self) -> None:
        """End every process the nodes started: their process groups, and any descendant that left them."""
        mine = _descendants({p.pid for p in self.procs})
        for p in reversed(self.procs):  # workers first, then the head
            _signal_group(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs:
            _signal_group(p.pid, signal.SIGKILL)
            p.wait()
        for pid in mine:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> RayCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _descendants(roots: set[int]) -> set[int]:
    """Processes below ``roots``, from /proc (Ray workers start sessions of their own)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = set(), set(roots)
    while frontier:
        frontier = {pid for pid, pp in parent.items() if pp in frontier and pid not in found}
        found |= frontier
    return found
