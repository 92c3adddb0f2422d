"""A Linux board over SSH (Raspberry Pi, Jetson, ...), timed on the board by a small runner script.

Per build: check the board's Python, push the runner (``latency_lut/backends/ssh/board_runner.py``, stdlib + numpy + the
runtime) unless the board holds it with the same checksum, and start it as one long-lived SSH session pinned to
``cpu_mask``, with the cpufreq ``governor`` set for its lifetime. Per op: send the model unless the board holds one
with the same checksum, wait while the chosen thermal zones are above the threshold, and let the runner time it
with the protocol; the raw samples stream back as JSON lines and the build commits the op to the store.

A dropped connection is retried ``reconnect_attempts`` times (the op in flight is measured again); then the build
stops with a DeviceError, every finished op already in the store, and the same command resumes it.
"""

from __future__ import annotations

import base64
import json
import logging
import posixpath
import time
from importlib import resources
from pathlib import Path
from typing import Any

from latency_lut.backends.base import Backend
from latency_lut.backends.ssh import transport
from latency_lut.backends.ssh.config import SshConfig
from latency_lut.backends.ssh.transport import ConnectionLost, RunnerSession, quote
from latency_lut.backends.thermal import ThermalGuard, ThermalReading
from latency_lut.checksums import ChecksumCache, sha256_file
from latency_lut.errors import DeviceError
from latency_lut.measure import Protocol, RunResult
from latency_lut.ops import OpSpec

log = logging.getLogger(__name__)

RUNNER_NAME = "runner.py"
MIN_PYTHON = (3, 7)
# Run by the board's interpreter before anything is pushed: its version, and the checksum of the runner it holds.
# Written so that a Python 2 prints its version too, and that message says "wrong Python", not "syntax error".
_PROBE = (
    "import sys, json, hashlib\n"
    "try:\n"
    "    h = hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest()\n"
    "except Exception:\n"
    "    h = None\n"
    "print(json.dumps({'fbnet_lut_probe': 1, 'version': list(sys.version_info[:3]), "
    "'executable': sys.executable, 'runner_sha256': h}))\n"
)
_PIP_NAMES = {"numpy": "numpy", "onnxruntime": "onnxruntime", "tflite_runtime": "tflite-runtime",
              "ai_edge_litert": "ai-edge-litert", "ai_edge_litert or tflite_runtime": "tflite-runtime"}


def runner_source() -> Path:
    return Path(str(resources.files("latency_lut.backends.ssh").joinpath("board_runner.py")))


class SshBackend(Backend):
    """Shared by the runtimes below; ``runtime`` and ``artifact_format`` come from the subclass."""

    def __init__(self, config: SshConfig) -> None:
        super().__init__(config.threads)
        self.config = config
        self.guard = ThermalGuard(self._read_zones, config.thermal_zones, config.cooldown_celsius,
                                  poll_seconds=config.cooldown_poll_seconds,
                                  timeout_seconds=config.cooldown_timeout_seconds, source=config.source,
                                  what="the board")
        self.reconnects = 0
        self._session: RunnerSession | None = None
        self._hello: dict[str, Any] | None = None
        self._runner_sha = sha256_file(runner_source())
        self._on_board: set[str] = set()  # model file names known to be on the board with their checksum
        self._used: set[str] = set()  # model files this build used (removed by close() unless keep_files)
        self._host_sha = ChecksumCache()
        self.pushed: list[str] = []  # what this backend sent to the board (the runner, model files), in order

    @classmethod
    def from_device(cls, device: Any, threads: int | None = None, **_: Any) -> SshBackend:
        return cls(SshConfig.from_options(device.name, device.source or device.name, int(threads or device.threads),
                                          dict(device.options)))

    # ---- paths and commands --------------------------------------------------------------------------------
    @property
    def remote_runner(self) -> str:
        return posixpath.join(self.config.remote_dir, RUNNER_NAME)

    def runner_command(self) -> str:
        c = self.config
        args = [c.python, "-u", self.remote_runner, "--dir", c.remote_dir, "--runtime", self.runtime,
                "--litert-module", c.litert_module]
        if c.cpu_mask:
            args += ["--cpu-mask", c.cpu_mask]
        if c.governor:
            args += ["--governor", c.governor]
        return "exec " + quote(*args)

    # ---- connecting ----------------------------------------------------------------------------------------
    def _run(self, command: str, *, stdin: bytes | None = None) -> tuple[Any, str, str]:
        proc = transport.run(self.config.target, command, stdin=stdin, source=self.config.source)
        return proc, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")

    def _probe(self) -> dict[str, Any]:
        c = self.config
        proc, out, err = self._run(quote(c.python, "-c", _PROBE, self.remote_runner))
        probe = None
        for line in out.splitlines():
            if '"fbnet_lut_probe"' in line:
                probe = json.loads(line)
        where = f"{c.target.describe()} ({c.source})"
        if probe is None:
            detail = " | ".join((err or out).strip().splitlines()[-2:]) or f"exit {proc.returncode}"
            if proc.returncode == 127:  # the shell's "command not found"
                raise DeviceError(f"the board {where} has no Python at {c.python!r} ({detail}): install Python 3 "
                                  f"(apt install python3) or set 'python' to its path, e.g. /usr/bin/python3")
            raise DeviceError(f"{c.python!r} on the board {where} is not a working Python 3 ({detail}): set "
                              "'python' to a Python 3.7+ interpreter, e.g. /usr/bin/python3")
        version = tuple(probe["version"])
        if version < MIN_PYTHON:
            raise DeviceError(
                f"{c.python!r} on the board {where} is Python {'.'.join(map(str, version))}; the runner needs "
                f"{'.'.join(map(str, MIN_PYTHON))}+: set 'python' to a newer interpreter, e.g. /usr/bin/python3")
        return probe

    def _disk_full(self, detail: str) -> DeviceError:
        return DeviceError(f"the board {self.config.target.describe()} has no space left in "
                           f"{self.config.remote_dir!r} ({detail}): free some space there (df -h) or set "
                           f"'remote_dir' in {self.config.source} to a folder on a disk with room")

    def _install_runner(self) -> None:
        probe = self._probe()
        if probe["runner_sha256"] == self._runner_sha:
            return
        d = self.config.remote_dir
        part = posixpath.join(d, ".runner.py.part")
        cmd = f"{quote('mkdir', '-p', d)} && cat > {quote(part)} && {quote('mv', '-f', part, self.remote_runner)}"
        proc, out, err = self._run(cmd, stdin=runner_source().read_bytes())
        if proc.returncode != 0:
            self._run(quote("rm", "-f", part))
            detail = " | ".join(err.strip().splitlines()[-2:]) or f"exit {proc.returncode}"
            if "no space left" in err.lower() or "quota exceeded" in err.lower():
                raise self._disk_full(detail)
            raise DeviceError(f"cannot write the runner to {d!r} on the board {self.config.target.describe()} "
                              f"({detail}): set 'remote_dir' in {self.config.source} to a folder the login can "
                              "write")
        self.pushed.append(RUNNER_NAME)
        if self._probe()["runner_sha256"] != self._runner_sha:
            raise DeviceError(f"the runner arrived corrupted at {self.remote_runner} on the board (checksum "
                              "mismatch); check the board's storage and rerun")

    def _start(self) -> RunnerSession:
        """A fresh runner session, greeted; DeviceError with the fix for a board that cannot run it."""
        self._install_runner()
        session = RunnerSession(self.config.target, self.runner_command(), source=self.config.source)
        try:
            hello = session.next(timeout=120)  # importing a runtime on a slow board takes seconds
        except ConnectionLost:
            session.kill()
            code = session.proc.returncode
            if code is not None and code >= 0 and code != transport.SSH_FAILED:  # the runner itself failed
                tail = " | ".join(session.stderr_text.strip().splitlines()[-2:]) or "no message"
                raise DeviceError(f"the runner did not start on the board {self.config.target.describe()} (exit "
                                  f"{code}: {tail}); check that 'python' in {self.config.source} has a working "
                                  f"numpy and {self.runtime}") from None
            raise
        except BaseException:
            session.kill()
            raise
        if hello.get("event") == "error":
            session.close()
            raise self._board_error(hello)
        if hello.get("runner_sha256") != self._runner_sha:
            session.close()
            raise DeviceError(f"the runner at {self.remote_runner} does not match this fbnet-lut (checksum); "
                              "remove it on the board and rerun")
        if self._hello is not None and hello.get("runtime_version") != self._hello.get("runtime_version"):
            session.close()
            raise DeviceError(f"the runtime on {self.config.target.describe()} changed during the build "
                              f"({self._hello['runtime_version']} -> {hello['runtime_version']}); rerun the build")
        self._hello = hello
        return session

    def _board_error(self, msg: dict[str, Any]) -> DeviceError:
        c, kind, text = self.config, msg.get("kind"), str(msg.get("message", ""))
        where = f"the board {c.target.describe()}"
        if kind == "missing_runtime":
            pip = _PIP_NAMES.get(text, text.replace("_", "-"))
            return DeviceError(f"{where}: {c.python} (Python {msg.get('python', '?')}) cannot import {text}: "
                               f"install it there ({c.python} -m pip install {pip}) or set 'python' in {c.source} "
                               "to an interpreter that has it")
        if kind == "disk_full":
            return self._disk_full(text)
        if kind == "cpu_mask":
            return DeviceError(f"{where}: cpu_mask {c.cpu_mask!r} in {c.source} is unusable: {text}")
        if kind == "governor":
            return DeviceError(f"{where}: cannot set governor {c.governor!r}: {text}; run as a user that may write "
                               f"cpufreq (root), or remove 'governor' from {c.source}")
        return DeviceError(f"{where}: the runner failed ({kind}): {text}")

    def _call(self, req: dict[str, Any], timeout: float, what: str) -> list[dict[str, Any]]:
        """One request, reconnecting after a dropped connection; every reply line of it."""
        last: Exception | None = None
        for attempt in range(self.config.reconnect_attempts + 1):
            if attempt:
                self.reconnects += 1
                log.warning("connection to %s lost (%s); reconnecting (%d/%d)", self.config.target.describe(),
                            last, attempt, self.config.reconnect_attempts)
                time.sleep(self.config.reconnect_delay_seconds)
            try:
                if self._session is None or not self._session.alive:
                    if self._session is not None:
                        self._session.kill()
                    self._session = None
                    self._session = self._start()
                replies = list(self._session.request(req, timeout))
            except ConnectionLost as e:
                last = e
                if self._session is not None:
                    self._session.kill()
                    self._session = None
                continue
            final = replies[-1]
            if "error" in final:
                if final["error"] == "disk_full":
                    raise self._disk_full(str(final.get("message")))
                raise DeviceError(f"{what} failed on the board {self.config.target.describe()}: "
                                  f"{final.get('message')}")
            return replies
        raise DeviceError(
            f"lost the connection to the board {self.config.target.describe()} during {what} ({last}); "
            f"{self.config.reconnect_attempts} reconnect attempt(s) failed. Check it is up (`ssh "
            f"{self.config.target.host} true`) and rerun the same command: finished ops are in the store and the "
            "build resumes where it stopped")

    def hello(self) -> dict[str, Any]:
        if self._hello is None:
            self._call({"cmd": "have", "models": []}, 60, "connecting")
        assert self._hello is not None
        return self._hello

    # ---- identity ------------------------------------------------------------------------------------------
    def runtime_version(self) -> str:
        h = self.hello()
        return f"{h['runtime_module']} {h['runtime_version']}"

    def settings(self) -> dict[str, Any]:
        c = self.config
        extra: dict[str, Any] = {"xnnpack": c.xnnpack} if self.runtime == "litert" else {
            "optimization": c.optimization}
        return {**super().settings(), **extra, "cpu_mask": c.cpu_mask, "governor": c.governor}

    def fingerprint(self) -> str:
        info = self.hello()["info"]
        ident = info.get("machine_id") or info.get("hostname") or self.config.target.host
        return f"ssh|{ident}|{info.get('model') or info.get('cpu_model') or '?'}"

    def device_info(self) -> dict[str, Any]:
        h = self.hello()
        info = dict(h["info"])
        governors = info.pop("governors", {})
        return {
            **info,
            "governor": sorted(set(governors.values())),
            "governors": governors,
            "runtime_module": h["runtime_module"],
            "runtime_version": h["runtime_version"],
            "numpy": h.get("numpy"),
            "transport": f"ssh {self.config.target.describe()}",
            "cpu_mask": self.config.cpu_mask,
            "runner_sha256": self._runner_sha,
            "thermal_zones": list(self.config.thermal_zones),
            "cooldown_celsius": self.config.cooldown_celsius,
        }

    # ---- per op --------------------------------------------------------------------------------------------
    def _read_zones(self) -> str:
        return str(self._call({"cmd": "zones"}, 60, "reading thermal zones")[-1]["text"])

    def ensure_model(self, artifact: Path) -> str:
        """The model's file name on the board; sent only if the board holds no file with the same checksum."""
        sha = self._host_sha(artifact)
        name = f"{sha[:24]}{artifact.suffix}"
        self._used.add(name)
        if name in self._on_board:
            return name
        have = self._call({"cmd": "have", "models": [[name, sha]]}, 120, f"checking {artifact.name}")[-1]["have"]
        if name not in have:
            data = base64.b64encode(artifact.read_bytes()).decode()
            self._call({"cmd": "put", "name": name, "sha256": sha, "data": data}, 300, f"sending {artifact.name}")
            self.pushed.append(name)
        self._on_board.add(name)
        return name

    def measure(self, spec: OpSpec, artifact: Path | None, protocol: Protocol) -> RunResult:
        if artifact is None:
            raise DeviceError(f"no .{self.artifact_format} artifact for {spec.key}; SSH boards run exported models")
        name = self.ensure_model(Path(artifact))
        before: ThermalReading | None = self.guard.wait_until_cool() if self.guard.enabled else None
        options = {"xnnpack": self.config.xnnpack} if self.runtime == "litert" else {
            "optimization": self.config.optimization}
        req = {"cmd": "measure", "model": name, "threads": self.threads, "options": options,
               "protocol": {"warmup": protocol.warmup, "runs": protocol.runs, "min_seconds": protocol.min_seconds,
                            "max_runs": protocol.max_runs, "max_seconds": protocol.max_seconds,
                            "clock": protocol.clock}}
        # Warmup and runs are capped by max_seconds each; loading a model and the transfer come on top.
        replies = self._call(req, 2 * protocol.max_seconds + 120, f"the benchmark of {spec.key}")
        samples = [float(x) for r in replies for x in r.get("samples", ())]
        if len(samples) != replies[-1].get("done"):
            raise DeviceError(f"the board sent {len(samples)} of {replies[-1].get('done')} samples of {spec.key}; "
                              "rerun the build")
        extra: dict[str, Any] = {"load_seconds": replies[-1].get("load_seconds"), "reconnects": self.reconnects}
        if before is not None:
            after = self.guard.read()
            extra.update(temperature_c=round(before.celsius, 2), temperature_after_c=round(after.celsius, 2),
                         thermal_wait_seconds=before.waited_seconds, zones_c=before.zones)
        return RunResult(samples_ms=samples, extra=extra)

    # ---- teardown ------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Remove the models used unless keep_files, stop the runner (which restores the governor); never raises."""
        session, self._session = self._session, None
        if session is None:
            return
        try:
            if session.alive and not self.config.keep_files:
                session.call({"cmd": "remove", "models": sorted(self._used)}, 60)
                session.close()
                self._run(quote("rm", "-f", self.remote_runner) + "; " + quote(
                    "rmdir", posixpath.join(self.config.remote_dir, "models"), self.config.remote_dir)
                    + " 2>/dev/null")
        except Exception as e:  # cleanup after a lost board must not hide the error that ended the build
            log.warning("could not clean up the board: %s", e)
        finally:
            session.close()


class SshLiteRTBackend(SshBackend):
    """LiteRT on the board: ``tflite_runtime`` or ``ai_edge_litert``, whichever it has (or ``litert_module``)."""

    runtime = "litert"
    artifact_format = "tflite"


class SshOnnxRuntimeBackend(SshBackend):
    runtime = "onnxruntime"
    artifact_format = "onnx"
