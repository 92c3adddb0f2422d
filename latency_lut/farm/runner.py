"""The farm on Ray: one actor per device, the driver hands out (op, round) tasks and is the store's only writer.

* Each device gets one Ray actor, placed on its host through the custom resource ``host:NAME`` (see
  :mod:`latency_lut.farm.config`); an actor runs one call at a time, so a device runs one benchmark at a time.
* Devices that share a LUT identity (same descriptor name, device model, runtime and settings) form a group; the
  group's tasks are sharded over them with work stealing (:mod:`latency_lut.farm.schedule`).
* Artifacts are exported once on the driver, from while Ray starts until the devices need them (a device waits
  only for its next task's model), and shipped through Ray's object store, so hosts need no shared disk; a device
  gets each artifact with its first task that needs it.
* Each result streams back to the driver, which commits it to the SQLite store in its own transaction with its
  round, as a single-process build does: resume works the same, and a rerun skips what any device measured.
* A device whose call fails (its phone unplugged, its host gone) is dropped and its in-flight task goes back to
  the others; a task that fails on two devices is the op's fault and stops the build.
* The closing calibration pass shards its whole networks' rounds over the phones of each LUT the same way
  (:meth:`FarmSession.calibrate`), and its calibration goes into that LUT's header as in a single-device build.

Only this module imports Ray.
"""

from __future__ import annotations

import os
import queue
import shutil
import socket
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from random import Random
from typing import Any

import ray

from latency_lut import __version__
from latency_lut.build import DEFAULT_ROUNDS, Progress, aggregate, config_for, reference_op
from latency_lut.devices import Device
from latency_lut.drift import DriftGuard, DriftMonitor
from latency_lut.errors import LatencyLutError
from latency_lut.export import FORMATS, artifact_path, export_many
from latency_lut.farm.config import HOST_RESOURCE, LOCAL, Farm, FarmDevice, FarmError
from latency_lut.farm.schedule import Task, WorkQueue, round_order
from latency_lut.lut import LUT
from latency_lut.measure import (
    GatedResult,
    Protocol,
    RunResult,
    measure_gated,
    protocol_seconds,
)
from latency_lut.metrics import spread
from latency_lut.networks import NetMeasurement, NetworkSpec, export_networks
from latency_lut.ops import OpSpec
from latency_lut.spaces import SearchSpace
from latency_lut.store import Config, Store
from latency_lut.validate import MAX_CALIBRATION_NOISE, CalibrationPass, calibration_pass, stored_rounds

# A device needs a sliver of its host's resource, so any number of devices can hang off one host.
HOST_SHARE = 0.001
CONNECT_TIMEOUT_S = 5.0
FAILURES_PER_TASK = 2  # a task that fails on this many devices is the op's fault, not the devices'
# A device that gives no result for this long is taken for hung (a phone that froze, a host cut off without the
# connection breaking) and dropped like one that failed.
TASK_TIMEOUT_S = 1800.0
_POLL_S = 2.0


class RemoteBackend:
    """The driver's view of a backend that lives in an actor: what ``config_for`` and ``aggregate`` ask of it.

    Its fingerprint names the device *model* (not the unit), so the devices of one model share a configuration
    in the store, and a rerun with other units of that model resumes it.
    """

    def __init__(self, info: dict[str, Any]) -> None:
        self.runtime = info["runtime"]
        self.artifact_format = info["artifact_format"]
        self.dtype = info.get("dtype", "fp32")
        self._info = info

    def settings(self) -> dict[str, Any]:
        return dict(self._info["settings"])

    def fingerprint(self) -> str:
        return self._info["model_fingerprint"]

    def device_info(self) -> dict[str, Any]:
        return dict(self._info["device_info"])


def model_fingerprint(kind: str, info: dict[str, Any]) -> str:
    """What units of one device model have in common: a phone's maker, model and SoC; a board's or host's CPU."""
    fields = {"android": ("manufacturer", "model", "soc"), "ssh": ("model", "cpu_model", "machine")}.get(
        kind, ("cpu_model", "machine", "cpu_count"))
    return "|".join(["farm", kind, *(str(info.get(f, "?")) for f in fields)])


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=1)
class DeviceActor:
    """One device, on its host: a backend, and a folder holding the artifacts the driver shipped."""

    def __init__(self, device: Device, runtime: str | None, threads: int | None, dtype: str = "fp32") -> None:
        from latency_lut.backends import create_backend

        self.device = device
        self.backend = create_backend(device, runtime, dtype, threads=threads)
        self.dir = Path(tempfile.mkdtemp(prefix="fbnet-farm-"))
        self.paths: dict[str, Path] = {}

    def info(self) -> dict[str, Any]:
        b = self.backend
        env = b.device_info()
        return {"runtime": b.runtime, "artifact_format": b.artifact_format, "dtype": b.dtype, "settings": b.settings(),
                "fingerprint": b.fingerprint(), "model_fingerprint": model_fingerprint(self.device.kind, env),
                "device_info": env, "node": ray.get_runtime_context().get_node_id(),
                "hostname": socket.gethostname(), "pid": os.getpid()}

    def _artifact(self, spec: OpSpec, artifact: bytes | None) -> Path | None:
        if not self.backend.artifact_format:
            return None
        if artifact is not None:
            path = self.dir / f"{spec.key}{FORMATS[self.backend.artifact_format]}"
            path.write_bytes(artifact)
            self.paths[spec.key] = path
        return self.paths[spec.key]

    def measure(self, spec: OpSpec | NetworkSpec, artifact: bytes | None, protocol: Protocol,
                gated: bool = True) -> GatedResult:
        """An op under the noise gate (re-taken while too noisy), or, ``gated=False``, one attempt at a whole
        network, as the calibration pass of a build takes it."""
        run = partial(self.backend.measure, spec, self._artifact(spec, artifact), protocol)
        if gated:
            return measure_gated(run, protocol)
        result = run()
        return GatedResult([result], 0, result.summary().noise > protocol.noise_threshold)

    def check(self, spec: OpSpec, artifact: bytes | None, protocol: Protocol) -> RunResult:
        """One re-timing of the drift guard's reference op (one attempt, as a build's check)."""
        return self.backend.measure(spec, self._artifact(spec, artifact), protocol)

    def close(self) -> None:
        try:
            self.backend.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---- connecting ----------------------------------------------------------------------------------------------
def connect(farm: Farm) -> str:
    """Start a local head or join the farm's cluster; returns the address, for messages."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no telemetry unless the user asks for it
    kw: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False, "logging_level": "error",
                          "configure_logging": True}
    if farm.ray == LOCAL:
        # This machine is every host named in the farm file that is its own name, or "local".
        hosts = {socket.gethostname(), "local"}
        ray.init(address="local", resources={HOST_RESOURCE.format(h): 1000 for h in hosts}, **kw)
        return "a local head"
    probe(farm)
    try:
        ray.init(address=farm.ray, **kw)
    except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ...: all mean the same here
        raise FarmError(f"farm file {farm.source}: cannot join the Ray cluster at {farm.ray}: "
                        f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
    return farm.ray


def probe(farm: Farm) -> None:
    """A farm's Ray head must answer on its port: refused at once, with the fix, not after Ray's long retries."""
    if farm.ray == LOCAL:
        return
    host, port = farm.ray.rsplit(":", 1)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise FarmError(f"farm file {farm.source}: cannot reach the Ray head at {farm.ray} ({e.strerror or e}); "
                        f"start it there with 'ray start --head --port={port}' or fix field 'ray'") from None


def check_hosts(farm: Farm, address: str) -> None:
    """Every host the farm names must be a custom resource of a live node, or its actor would wait forever."""
    provided = {r for n in ray.nodes() if n.get("Alive") for r in n.get("Resources", {})}
    hosts = sorted(r[len(HOST_RESOURCE.format("")):] for r in provided if r.startswith(HOST_RESOURCE.format("")))
    for d in farm.devices:
        if d.resource and d.resource not in provided:
            join = "ray start --address=HEAD:PORT --resources='{\"" + d.resource + "\": 1}'"
            raise FarmError(f"farm file {farm.source}: devices[{d.index}]: host {d.host!r} is provided by no node "
                            f"of the Ray cluster ({address}; hosts: {', '.join(hosts) or 'none'}); on that "
                            f"machine run: {join}")


def _reason(e: BaseException) -> str:
    """The one line that says why a remote call failed (the device's own error, not Ray's wrapping)."""
    cause = getattr(e, "cause", None) or getattr(e, "__cause__", None)
    if isinstance(e, ray.exceptions.RayTaskError) and cause is not None:
        e = cause
    text = str(e).strip()
    if isinstance(e, ray.exceptions.RayActorError):
        text = "its actor died (the host left the cluster or the process was killed)"
    return text.splitlines()[0] if text else type(e).__name__


# ---- the build -------------------------------------------------------------------------------------------------
@dataclass
class GroupResult:
    """One LUT of the farm: the devices that shared it and what this run did for it."""

    name: str
    config: Config
    devices: list[str]
    lut: LUT | None = None
    tasks: int = 0  # (op, round) tasks this run took
    measured: int = 0  # ops that had at least one round to take
    reused: int = 0
    flagged: list[str] = field(default_factory=list)
    left: int = 0  # tasks not taken because every device of the group dropped out
    per_device: dict[str, int] = field(default_factory=dict)
    # Seconds its devices spent on this run's tasks (each call's wall time, summed over devices), and what the
    # protocol alone accounts for in them: the calibration pass's budget and cost ratio are in device-seconds.
    device_seconds: float = 0.0
    protocol_seconds: float = 0.0
    calibration: CalibrationPass | None = None

    @property
    def cost_ratio(self) -> float | None:
        return self.device_seconds / self.protocol_seconds if self.protocol_seconds > 0 else None


@dataclass
class FarmResult:
    groups: list[GroupResult]
    dropped: dict[str, str]  # device label -> why it was dropped
    stolen: int
    returned: int
    ray_start_seconds: float  # starting or joining the cluster
    setup_seconds: float  # the actors: connecting to each device, reading its properties
    export_seconds: float
    measure_seconds: float
    drift: dict[str, int] = field(default_factory=dict)  # the drift guard, over all devices: checks, drifts, ...


@dataclass
class _Member:
    fd: FarmDevice
    actor: Any
    info: dict[str, Any]
    group: GroupResult | None = None
    session: int | None = None
    shipped: set[str] = field(default_factory=set)
    monitor: Any = None  # its drift monitor (drift.DriftMonitor), when the build has a drift guard
    since: list[tuple[Task, list[int]]] = field(default_factory=list)  # tasks timed since its last good check
    rechecks: int = 0  # checks in a row after a drift, waiting for the reference to come back


class FarmSession:
    """The farm up and ready: the cluster joined (or a local head started), every host checked, every device's
    actor placed and its device reached. Leaving the ``with`` closes the devices and leaves the cluster.

    ``with FarmSession(farm) as fs: result = fs.build(space, store, protocol)``
    """

    def __init__(self, farm: Farm, *, runtime: str | None = None, threads: int | None = None, dtype: str = "fp32",
                 task_timeout: float = TASK_TIMEOUT_S, meanwhile: ExportAhead | None = None,
                 progress: Progress | None = None) -> None:
        """``meanwhile``: the build's export (:class:`ExportAhead`), started before the cluster, and consumed by
        :meth:`build` as it goes."""
        self.farm, self.runtime, self.threads, self.task_timeout = farm, runtime, threads, task_timeout
        self.dtype, self.meanwhile, self.progress = dtype, meanwhile, progress
        self.members: list[_Member] = []
        self.dropped: dict[str, str] = {}  # device label -> why, over every build of this session
        self.ray_start_seconds = self.setup_seconds = self.ray_stop_seconds = self.meanwhile_seconds = 0.0

    def __enter__(self) -> FarmSession:
        t0 = time.perf_counter()
        probe(self.farm)  # an unreachable head is named at once, before anything starts
        side = self.meanwhile
        if side:
            side.start()
        try:
            address = connect(self.farm)
            self.ray_start_seconds = time.perf_counter() - t0
            try:
                check_hosts(self.farm, address)
                self.members = _start_devices(self.farm, self.runtime, self.threads, self.dtype)
                self.setup_seconds = time.perf_counter() - t0 - self.ray_start_seconds
            except BaseException:
                self.__exit__()
                raise
        except BaseException:
            if side:
                side.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        t0 = time.perf_counter()
        if self.meanwhile:
            self.meanwhile.stop()
            self.meanwhile_seconds = self.meanwhile.seconds
        _shutdown(self.members)
        self.ray_stop_seconds = time.perf_counter() - t0

    def build(self, space: SearchSpace, store: Store, protocol: Protocol, *, specs: Sequence[OpSpec] | None = None,
              rounds: int = DEFAULT_ROUNDS, guard: DriftGuard | None = None, jobs: int = 1, seed: int = 0,
              progress: Progress | None = None) -> FarmResult:
        """Measure every op of ``space`` (or ``specs``) in ``rounds`` interleaved rounds for every LUT identity of
        the farm, as :func:`latency_lut.build.build_lut` does on one device; the store gets each task as it ends.
        With a ``guard``, each device re-times the build's reference op (see :func:`_drive`)."""
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"rounds must be a whole number >= 1, got {rounds!r}")
        specs = list(specs if specs is not None else space.unique_specs())
        ref = reference_op(specs) if guard is not None else None
        members = [m for m in self.members if m.fd.label not in self.dropped]
        if not members:
            raise FarmError("every device of the farm has dropped out")
        t0 = time.perf_counter()
        groups = _group(members, protocol)
        queues, by_key = _plan(groups, store, specs, rounds, seed)
        feed = _export(members, queues, by_key, jobs, progress, ref, self.meanwhile)
        t1 = time.perf_counter()
        dropped, stolen, returned, drift = _drive(members, queues, by_key, feed, store, protocol, progress,
                                                  self.task_timeout, guard, ref)
        self.dropped.update(dropped)
        t2 = time.perf_counter()
        for g in groups:
            m = next(m for m in members if m.group is g)
            g.lut = farm_lut(store, g, space, m.fd.device, RemoteBackend(m.info), specs, members, rounds, guard)
        return FarmResult(groups, dropped, stolen, returned, self.ray_start_seconds, self.setup_seconds, t1 - t0,
                          t2 - t1, drift)

    def calibrate(self, g: GroupResult, store: Store, *, budget_s: float, max_models: int = 40, jobs: int = 1,
                  progress: Progress | None = None, max_noise: float = MAX_CALIBRATION_NOISE,
                  rounds: int = 3) -> CalibrationPass | None:
        """The closing calibration pass of a build (:func:`latency_lut.validate.calibration_pass`) for the LUT of
        group ``g``, its whole networks' rounds sharded over the group's devices like its ops (one attempt per
        round, as on one device). ``budget_s`` is in device-seconds (a share of what the group's devices spent on
        the build), so the same models are chosen for one phone or ten, and the pass's wall time shrinks with the
        number of phones. The calibration goes into ``g.lut``'s header; None when no device of the group is left.
        """
        members = [m for m in self.members if m.group is g and m.fd.label not in self.dropped]
        if g.lut is None or not members:
            return None
        backend = RemoteBackend(members[0].info)

        def measure(nets: list[NetworkSpec], *, rounds: int, seed: int, jobs: int, store: Store,
                    progress: Progress | None, tag: str, deadline: float) -> dict[str, NetMeasurement]:
            assert g.lut is not None
            protocol = Protocol.from_dict(g.lut.header.get("protocol") or {})
            done = stored_rounds(store, g.config, nets)
            out = {n.key: NetMeasurement(n.key) for n in nets}
            blobs: dict[tuple[str, str], Any] = {}
            fmt = backend.artifact_format
            todo = [n for n in nets if len(done.get(n.key, {})) < rounds]
            if fmt and todo:
                for key, art in export_networks(todo, fmt, jobs=jobs, dtype=backend.dtype).items():
                    if isinstance(art, Path):
                        blobs[fmt, key] = ray.put(art.read_bytes())
                    else:
                        out[key].error = str(art)
            tasks = []
            for r in range(rounds):  # round r in its own shuffled order, as on one device
                order = [n.key for n in nets if r not in done.get(n.key, {}) and out[n.key].error is None]
                Random(f"{seed}-round-{r}").shuffle(order)
                tasks += [Task(r, k) for k in order]
            failed: str | None = None
            if tasks:
                work = WorkQueue(tasks, [m.fd.label for m in members], [n.key for n in nets])
                # the budget is in device-seconds: the pass's own wall clock runs n times as fast
                wall = time.monotonic() + max(0.0, deadline - time.perf_counter()) / len(members)
                by_key = {n.key: n for n in nets}
                left, dropped = g.left, {}
                try:
                    dropped, *_ = _drive(members, {id(g): work}, by_key, blobs, store, protocol, progress,
                                         self.task_timeout, phase=f"calibration x{rounds}", gated=False,
                                         tag=lambda t: {"network": by_key[t.key].to_dict(), "by": tag},
                                         deadline=wall)
                except FarmError as e:  # a network that failed on two phones: the fit uses the networks that ran
                    failed = str(e)
                finally:
                    g.left = left  # the LUT is whole: phones lost in its calibration do not make it partial
                self.dropped.update(dropped)
            for key, by_round in stored_rounds(store, g.config, nets).items():
                out[key].rounds = [by_round[r] for r in sorted(by_round) if r < rounds]
            for m in out.values():
                if failed and not m.rounds and m.error is None:
                    m.error = failed
            return out

        g.calibration = calibration_pass(
            g.lut, members[0].fd.device, backend, store, budget_s=budget_s, max_models=max_models, rounds=rounds,
            jobs=jobs, progress=progress, cost_ratio=g.cost_ratio or 1.0, max_noise=max_noise, measure=measure)
        return g.calibration


def artifact_formats(farm: Farm, runtime: str | None) -> list[str]:
    """What the farm's devices run (tflite, onnx), as far as the driver can tell without reaching them."""
    from latency_lut.backends import backend_class

    out = set()
    for d in farm.devices:
        try:
            fmt = backend_class(d.device.kind, runtime or d.device.runtime).artifact_format
        except LatencyLutError:  # a runtime the driver lacks: its device says so when it starts
            continue
        if fmt:
            out.add(fmt)
    return sorted(out)


class ExportAhead:
    """The build's export, in a thread, started while Ray starts and the devices are reached, and going on while
    they measure (``FarmSession(meanwhile=...)``): a device waits only for the artifact of its next task, not for
    the whole export. The ops go in the order a fresh build's first round takes them (what is cached is done at
    once). What it does not cover (a format the driver could not foresee) ``build`` exports itself. A farm that
    cannot start stops it after the exports under way.
    """

    def __init__(self, farm: Farm, specs: Sequence[OpSpec], *, runtime: str | None, dtype: str, jobs: int,
                 seed: int = 0) -> None:
        self.fmts = artifact_formats(farm, runtime)
        by_key = {s.key: s for s in specs}
        self.specs = [by_key[k] for k in round_order(list(by_key), seed, 0)]
        self.by_key = by_key
        self.dtype, self.jobs = dtype, jobs
        self.errors: dict[str, dict[str, str]] = {f: {} for f in self.fmts}  # format -> key -> why it failed
        self._done: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self.cancel = threading.Event()
        self.error: BaseException | None = None
        self.seconds = 0.0
        self._thread: threading.Thread | None = None

    def covers(self, fmt: str, dtype: str) -> bool:
        return fmt in self.fmts and dtype == self.dtype

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="farm-export", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        # In worker processes even for one job: a converter redirects its process's stdout and stderr while it
        # runs, which in this process would swallow the driver's own output.
        from concurrent.futures import FIRST_COMPLETED, wait

        from latency_lut.export import export_pool, export_spec

        t0 = time.perf_counter()
        try:
            todo = []
            for fmt in self.fmts:
                for spec in self.specs:
                    if artifact_path(spec, fmt, dtype=self.dtype).exists():
                        self._done.put((fmt, spec.key))
                    else:
                        todo.append((fmt, spec))
            if not todo:
                return
            pool = export_pool(max(1, self.jobs))
            try:
                futs = {pool.submit(export_spec, spec, fmt, None, self.dtype): (fmt, spec.key) for fmt, spec in todo}
                while futs and not self.cancel.is_set():
                    done, _ = wait(list(futs), timeout=0.2, return_when=FIRST_COMPLETED)
                    for fut in done:
                        fmt, key = futs.pop(fut)
                        err = fut.exception()
                        if err is not None:
                            if not isinstance(err, LatencyLutError):
                                raise err
                            self.errors[fmt][key] = str(err)
                        self._done.put((fmt, key))
            finally:
                pool.shutdown(wait=True, cancel_futures=True)  # after a cancel: only the exports under way
        except BaseException as e:  # noqa: BLE001 - raised on the driver's thread by drain()
            self.error = e
        finally:
            self.seconds = time.perf_counter() - t0

    def drain(self) -> list[tuple[str, str, Path | str]]:
        """What was exported since the last call: (format, key, its path or why it failed)."""
        out: list[tuple[str, str, Path | str]] = []
        while not self._done.empty():
            fmt, key = self._done.get()
            why = self.errors[fmt].get(key)
            spec = self.by_key[key]
            out.append((fmt, key, why if why is not None else artifact_path(spec, fmt, dtype=self.dtype)))
        if not out and not self.running and self.error is not None:
            raise self.error
        return out

    def wait(self, seconds: float) -> None:
        if self._thread is not None:
            self._thread.join(seconds)

    def stop(self) -> None:
        self.cancel.set()
        if self._thread is not None:
            self._thread.join()


def _start_devices(farm: Farm, runtime: str | None, threads: int | None, dtype: str = "fp32") -> list[_Member]:
    actors = []
    for d in farm.devices:
        opts: dict[str, Any] = {"resources": {d.resource: HOST_SHARE}} if d.resource else {}
        actors.append(DeviceActor.options(**opts).remote(d.device, runtime, threads, dtype))
    members = []
    for d, a in zip(farm.devices, actors):
        try:
            info = ray.get(a.info.remote())
        except Exception as e:  # noqa: BLE001 - any failure to set a device up stops the build before measuring
            raise FarmError(f"farm file {farm.source}: devices[{d.index}] ({d.label}"
                            f"{' on host ' + d.host if d.host else ''}): {_reason(e)}") from None
        members.append(_Member(d, a, info))
    return members


def _group(members: list[_Member], protocol: Protocol) -> list[GroupResult]:
    groups: dict[tuple[str, ...], GroupResult] = {}
    names: dict[str, tuple[str, ...]] = {}
    for m in members:
        c = config_for(m.fd.device, RemoteBackend(m.info), protocol)
        ident = (c.device, c.fingerprint, c.runtime, c.hash)
        if c.device in names and names[c.device] != ident:
            raise FarmError(f"devices named {c.device!r} differ in model, runtime or settings "
                            f"({m.fd.label} is {m.info['model_fingerprint']}); give each kind its own 'name' in "
                            "the farm file so that each gets its own LUT")
        names[c.device] = ident
        g = groups.setdefault(ident, GroupResult(c.device, c, []))
        g.devices.append(m.fd.label)
        m.group = g
    return list(groups.values())


def _plan(groups: list[GroupResult], store: Store, specs: list[OpSpec], rounds: int,
          seed: int) -> tuple[dict[int, WorkQueue], dict[str, OpSpec]]:
    """Each group's tasks: round r holds the ops lacking a round-r record, in that round's shuffled order."""
    by_key = {s.key: s for s in specs}
    queues = {}
    for g in groups:
        have = store.round_records(g.config, list(by_key))
        tasks = []
        for r in range(rounds):
            tasks += [Task(r, k) for k in round_order([s.key for s in specs if r not in have.get(s.key, {})], seed, r)]
        g.measured = len({t.key for t in tasks})
        g.reused = len(specs) - g.measured
        queues[id(g)] = WorkQueue(tasks, g.devices, list(by_key))
    return queues, by_key


class _Feed:
    """The artifacts of a build in Ray's object store, by (format, key); ``pending`` are those the export in the
    background (:class:`ExportAhead`) has yet to deliver."""

    def __init__(self, refs: dict[tuple[str, str], Any], pending: set[tuple[str, str]] | None = None,
                 ahead: ExportAhead | None = None, jobs: int = 1) -> None:
        self.refs, self.pending, self.ahead, self.jobs = refs, pending or set(), ahead, jobs

    def __getitem__(self, fmt_key: tuple[str, str]) -> Any:
        return self.refs[fmt_key]

    def poll(self) -> None:
        """Take what the background export delivered; if it ended without some, export those here."""
        if not self.pending or self.ahead is None:
            return
        running = self.ahead.running
        for fmt, key, got in self.ahead.drain():
            if (fmt, key) not in self.pending:
                continue
            if isinstance(got, str):
                raise FarmError(f"op {key} could not be exported to {fmt}: {got}")
            self.refs[fmt, key] = ray.put(got.read_bytes())
            self.pending.discard((fmt, key))
        if self.pending and not running:
            for fmt in {f for f, _ in self.pending}:
                keys = [k for f, k in self.pending if f == fmt]
                for k, path in export_many([self.ahead.by_key[k] for k in keys], fmt, jobs=self.jobs,
                                           dtype=self.ahead.dtype).items():
                    self.refs[fmt, k] = ray.put(Path(path).read_bytes())
            self.pending.clear()

    def wait(self, seconds: float) -> None:
        if self.ahead is not None:
            self.ahead.wait(seconds)


def _export(members: list[_Member], queues: dict[int, WorkQueue], by_key: dict[str, OpSpec], jobs: int,
            progress: Progress | None, ref: OpSpec | None = None, ahead: ExportAhead | None = None) -> _Feed:
    """What the tasks (and the drift guard's reference) need, once per format, into Ray's object store: left to
    ``ahead`` where it exports them, else exported here."""
    need: dict[tuple[str, str], set[str]] = {}
    for m in members:
        fmt = m.info["artifact_format"]
        if fmt and m.group is not None:
            keys = {t.key for s in queues[id(m.group)].shards.values() for t in s}
            need.setdefault((fmt, m.info["dtype"]), set()).update(
                keys | ({ref.key} if ref is not None and keys else set()))
    refs: dict[tuple[str, str], Any] = {}
    pending: set[tuple[str, str]] = set()
    for (fmt, dtype), keys in need.items():
        if ahead is not None and ahead.covers(fmt, dtype):
            covered = {s.key for s in ahead.specs}
            pending |= {(fmt, k) for k in keys & covered}
            keys = keys - covered
        if not keys:
            continue
        todo = [by_key[k] for k in sorted(keys)]
        if progress:
            progress.start(f"export {fmt}" + ("" if dtype == "fp32" else f" {dtype}"), len(todo))
        paths = export_many(todo, fmt, jobs=jobs, dtype=dtype,
                            on_done=(lambda s: progress.advance(s.key)) if progress else None)
        if progress:
            progress.finish()
        refs.update({(fmt, k): ray.put(Path(p).read_bytes()) for k, p in paths.items()})
    feed = _Feed(refs, pending, ahead, jobs)
    feed.poll()
    return feed


CHECK_ROUND = -1  # the round of a drift-guard check in the driver's bookkeeping (never stored as a round)


def _drive(members: list[_Member], queues: dict[int, WorkQueue], by_key: dict[str, Any],
           artifacts: _Feed | dict[tuple[str, str], Any], store: Store, protocol: Protocol, progress: Progress | None,
           task_timeout: float, guard: DriftGuard | None = None, ref: OpSpec | None = None, *,
           phase: str = "measure", gated: bool = True, tag: Callable[[Task], dict[str, Any]] | None = None,
           deadline: float | None = None) -> tuple[dict[str, str], int, int, dict[str, int]]:
    """Keep every device busy with one task; commit each result as it arrives; drop devices that fail.

    ``by_key`` maps a task's key to what is timed (an OpSpec, or a NetworkSpec for the calibration pass, which
    takes one attempt per task, ``gated=False``, and marks each stored row with ``tag(task)``). Past
    ``deadline`` (a ``time.monotonic()`` value), tasks after round 0 are no longer handed out. A device whose next
    task's artifact is still being exported (``artifacts.pending``) waits for it, and only for it.

    With a drift guard (``guard``, a drift.DriftGuard, and its reference op ``ref``), each device re-times the
    reference before its first task, after every ``guard.every`` tasks and when it runs dry; when it drifted, the
    tasks that device timed since its last good check are rejected in the store and go back to the queue (each
    at most ``guard.max_remeasure`` times), and the device re-checks before measuring on.
    """
    alive = {m.fd.label: m for m in members}
    in_flight: dict[Any, tuple[_Member, Task]] = {}
    started: dict[Any, float] = {}
    hung: dict[str, str] = {}
    failures: dict[Task, list[str]] = {}
    dropped: dict[str, str] = {}
    retaken: dict[Task, int] = {}
    counted: set[Task] = set()
    drift = {"checks": 0, "drifts": 0, "remeasured": 0}
    feed = artifacts if isinstance(artifacts, _Feed) else _Feed(artifacts)
    waiting: set[str] = set()  # devices whose next task waits for its artifact
    for m in members:
        m.monitor = DriftMonitor(guard) if guard is not None and ref is not None else None
        m.since = []
    total = sum(map(len, queues.values()))
    if progress and total:
        progress.start(f"{phase} on {len(members)} device(s)", total)

    def session(m: _Member) -> int:
        if m.session is None:
            assert m.group is not None
            m.session = store.start_session(m.group.config, {**m.info["device_info"], "farm_device": m.fd.label,
                                                             "farm_host": m.fd.host or m.info["hostname"]},
                                            __version__)
        return m.session

    def submit(m: _Member, task: Task) -> None:
        spec = ref if task.round == CHECK_ROUND else by_key[task.key]
        assert spec is not None
        fmt = m.info["artifact_format"]
        blob = feed[fmt, spec.key] if fmt and spec.key not in m.shipped else None
        r = (m.actor.check.remote(spec, blob, protocol) if task.round == CHECK_ROUND else
             m.actor.measure.remote(spec, blob, protocol, gated))
        in_flight[r] = (m, task)
        started[r] = time.monotonic()

    def blocked(m: _Member, key: str) -> bool:
        """Its artifact is still being exported (and this device does not hold it yet): the device waits."""
        fmt = m.info["artifact_format"]
        if fmt and (fmt, key) in feed.pending and key not in m.shipped:
            waiting.add(m.fd.label)
            return True
        return False

    def dispatch(m: _Member) -> None:
        waiting.discard(m.fd.label)
        check = Task(CHECK_ROUND, ref.key) if m.monitor is not None and ref is not None else None
        wait_checks = int(guard.max_wait_seconds / guard.wait_seconds) if check else 0
        if check and (m.monitor.baseline_ms is None or len(m.since) >= guard.every or 0 < m.rechecks <= wait_checks):
            return None if blocked(m, check.key) else submit(m, check)
        q = queues[id(m.group)]
        task = q.next(m.fd.label)
        while task is not None and deadline is not None and task.round > 0 and time.monotonic() > deadline:
            task = q.next(m.fd.label)  # past the deadline: later rounds are left out
        if task is not None:
            if blocked(m, task.key):
                return q.unget(m.fd.label, task)
            submit(m, task)
        elif check and m.since:  # the closing check of what it timed last
            if not blocked(m, check.key):
                submit(m, check)

    def busy(m: _Member) -> bool:
        return any(x is m for x, _ in in_flight.values())

    def wake(g: GroupResult) -> None:
        """Returned tasks may wake a device of the group that had run dry."""
        for other in alive.values():
            if other.group is g and not busy(other):
                dispatch(other)

    for m in members:
        dispatch(m)
    while in_flight or waiting:
        if waiting:
            feed.poll()  # what the export delivered lets the devices that wait for it go on
            for label in sorted(waiting):
                if label in alive and not busy(alive[label]):
                    dispatch(alive[label])
                else:
                    waiting.discard(label)
        if not in_flight:
            feed.wait(0.1)
            continue
        ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.1 if waiting else _POLL_S)
        if not ready:
            for r, (m, task) in in_flight.items():
                if time.monotonic() - started[r] > task_timeout and m.fd.label not in hung:
                    hung[m.fd.label] = f"no result for {task_timeout:g} s (op {task.key})"
                    ray.kill(m.actor, no_restart=True)  # its call now fails, and the device is dropped below
            continue
        [r] = ready
        m, task = in_flight.pop(r)
        took = time.monotonic() - started.pop(r)
        g = m.group
        assert g is not None
        try:
            result = ray.get(r)
        except Exception as e:  # noqa: BLE001 - a device that fails is dropped, whatever the failure
            why = hung.get(m.fd.label) or _reason(e)
            dropped[m.fd.label] = why
            alive.pop(m.fd.label)
            ray.kill(m.actor, no_restart=True)
            lost = None if task.round == CHECK_ROUND else task
            if lost is not None:
                failures.setdefault(lost, []).append(m.fd.label)
                if len(failures[lost]) >= FAILURES_PER_TASK:
                    what = "op" if gated else "network"
                    raise FarmError(f"{what} {lost.key} (round {lost.round}) failed on {len(failures[lost])} "
                                    f"devices ({', '.join(failures[lost])}): {why}; the other measurements are in the "
                                    f"store {store.path}") from None
            g.left += len(queues[id(g)].drop(m.fd.label, lost))
            wake(g)
            continue
        m.shipped.add(ref.key if task.round == CHECK_ROUND and ref is not None else task.key)
        if task.round == CHECK_ROUND:
            c = m.monitor.check(result)
            store.add_check(session(m), task.key, result, {**c.to_dict(), "farm_device": m.fd.label})
            drift["checks"] += 1
            if c.drifted:
                drift["drifts"] += 1
                again = [(t, ids) for t, ids in m.since if retaken.get(t, 0) < guard.max_remeasure]
                store.reject([x for _, ids in again for x in ids],
                             f"drift guard: reference op drifted on {m.fd.label}")
                for t, _ in again:
                    retaken[t] = retaken.get(t, 0) + 1
                    queues[id(g)].put_back(t)
                drift["remeasured"] += len(again)
                m.rechecks += 1
            else:
                m.rechecks = 0
            m.since = []
            dispatch(m)
            wake(g)  # after this device's own dispatch, so that it never has two calls in flight
            continue
        for att in result.attempts:
            att.extra.update(tag(task) if tag else {}, farm_device=m.fd.label)
        ids: list[int] = []
        m.since.append((task, ids))
        dispatch(m)  # the device's next task first: it need not wait for the store's commit
        ids += commit(store, session(m), task, result)
        if gated:
            g.tasks += 1
            g.per_device[m.fd.label] = g.per_device.get(m.fd.label, 0) + 1
            g.device_seconds += took
            g.protocol_seconds += sum(protocol_seconds(a.summary().median, protocol) for a in result.attempts)
        if result.flagged and task.key not in g.flagged and gated:
            g.flagged.append(task.key)
        if progress and task not in counted:
            progress.advance(task.key)
        counted.add(task)
    if progress and total:
        progress.finish()
    q = list(queues.values())
    return dropped, sum(x.stolen for x in q), sum(x.returned for x in q), drift


def _shutdown(members: list[_Member]) -> None:
    if members:
        pending = [m.actor.close.remote() for m in members]
        try:
            ray.wait(pending, num_returns=len(pending), timeout=30)
        except Exception:  # noqa: BLE001,S110 - a dead actor has nothing left to close
            pass
    ray.shutdown()


# ---- the store and the LUT -------------------------------------------------------------------------------------
def commit(store: Store, session: int, task: Task, result: GatedResult) -> list[int]:
    """One (op, round) task in its own transaction, with its round, as a build stores it."""
    return store.add(session, task.key, result, round_no=task.round)


def farm_lut(store: Store, g: GroupResult, space: SearchSpace, device: Device, backend: RemoteBackend,
             specs: list[OpSpec], members: list[_Member], rounds: int, guard: DriftGuard | None = None) -> LUT:
    """The group's LUT, as a build aggregates it, plus the devices in its header and each entry's spread."""
    lut = aggregate(store, g.config, space, device, backend, specs, rounds=rounds, guard=guard)
    by_round = store.round_records(g.config, [s.key for s in specs])
    spreads = []
    for key, entry in lut.entries.items():
        per: dict[str, list[float]] = {}
        for rec in by_round.get(key, {}).values():
            per.setdefault(str(rec.extra.get("farm_device", "?")), []).append(rec.stats.median)
        dev_ms = {d: round(statistics.median(v), 6) for d, v in sorted(per.items())}
        entry.extra["device_ms"] = dev_ms
        if len(dev_ms) > 1:
            entry.extra["device_spread"] = round(spread(list(dev_ms.values())), 6)
            spreads.append(entry.extra["device_spread"])
    timed = Counter(str(rec.extra.get("farm_device", "?")) for recs in by_round.values() for rec in recs.values())
    mine = [m for m in members if m.group is g]
    devices = [{"label": m.fd.label, "host": m.fd.host, "node": m.info["node"], "hostname": m.info["hostname"],
                "fingerprint": m.info["fingerprint"], "device_info": m.info["device_info"],
                "timings": timed.pop(m.fd.label, 0)} for m in mine]
    # Devices of earlier runs whose measurements the LUT still holds (their details are in their store sessions).
    devices += [{"label": label, "timings": n, "earlier_run": True} for label, n in sorted(timed.items())]
    lut.header["farm"] = {
        "devices": devices,
        "model_fingerprint": g.config.fingerprint,
        # (max - min) / median of the devices' medians, over the entries timed on more than one device
        "device_spread": {"entries": len(spreads), "median": round(statistics.median(spreads), 6),
                          "max": round(max(spreads), 6)} if spreads else None,
    }
    return lut
