"""An Android phone over ADB, timed by TFLite's ``benchmark_model`` pinned to the big cores.

Per build: connect (adb-shell, no adb server), read the phone's properties, push ``benchmark_model`` once (verified by
checksum, after checking it is built for the phone's ABI), and optionally switch on fixed performance mode. Per op:
push the .tflite unless the phone already holds one with the same checksum, wait while the chosen thermal zones are
above the threshold, run ``taskset MASK benchmark_model --graph=... --num_threads=...`` with the protocol's settings,
and parse its statistics (and op profile). ``close()`` removes what was pushed unless ``keep_files`` is set, and
restores the phone's performance mode.

benchmark_model prints aggregates, not per-run times, so a RunResult carries ``stats`` and no samples: count, mean,
std, min and max as printed; the median as printed when the build prints one, else the mean; p10/p25/p75/p90
estimated as described in :meth:`tflite_benchmark.RunStats.to_stats` (the method used is kept in
``extra.stats_source``, the fields the tool printed in ``extra.printed``).
"""

from __future__ import annotations

import logging
import posixpath
import re
from pathlib import Path
from typing import Any

from latency_lut.backends.android.adb import AdbSession, quote
from latency_lut.backends.android.config import AndroidConfig, elf_abi
from latency_lut.backends.base import Backend
from latency_lut.backends.tflite_benchmark import OutputFormatError, parse_one
from latency_lut.backends.thermal import READ_ZONES, ThermalGuard, ThermalReading
from latency_lut.checksums import ChecksumCache, sha256_file
from latency_lut.errors import DeviceError
from latency_lut.measure import Protocol, RunResult, Stats, check_plausible_stats
from latency_lut.ops import OpSpec

log = logging.getLogger(__name__)

BINARY_NAME = "benchmark_model"
_EXEC_FAILURE = re.compile(r"exec format error|not executable|cannot execute|permission denied|syntax error|"
                           r"inaccessible or not found|: not found", re.IGNORECASE)


def _bool(v: bool) -> str:
    return "true" if v else "false"


def benchmark_flags(c: AndroidConfig, threads: int, protocol: Protocol, dtype: str = "fp32") -> list[str]:
    """benchmark_model's flags after ``--graph`` for this descriptor, protocol and dtype (live and offline runs
    alike): fp16 asks the delegate for fp16 inference (XNNPACK's FORCE_FP16, the GPU's reduced precision)."""
    args = [
        f"--num_threads={threads}", f"--warmup_runs={protocol.warmup}", "--warmup_min_secs=0",
        f"--num_runs={protocol.runs}", f"--min_secs={protocol.min_seconds:g}", f"--max_secs={protocol.max_seconds:g}",
        f"--use_xnnpack={_bool(c.xnnpack)}", f"--use_gpu={_bool(c.gpu)}",
    ]
    if c.nnapi:
        args.append("--use_nnapi=true")
    if dtype == "fp16":
        args += ["--xnnpack_force_fp16=true"] if c.xnnpack else []
        args += ["--gpu_precision_loss_allowed=true"] if c.gpu else []
    if c.op_profiling:
        args.append("--enable_op_profiling=true")
    return args


def _error_text(errors: list[str], limit: int = 400) -> str:
    """The tool's own error lines on one line (for a user-facing message)."""
    text = " | ".join(errors)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_output(text: str, ok: bool, key: str, exit_code: int | None = None,
                device: str = "") -> tuple[Any, Stats, str]:
    """benchmark_model's output -> (parsed run, stats, how the percentiles were had); anything unusable,
    including numbers no run can take (the shared plausibility rule), is a DeviceError naming the op."""
    where = f"benchmark_model on {device}, {key}" if device else f"benchmark_model on {key}"
    try:
        out = parse_one(text, where)
        if not ok or out.timed is None or out.timed.count < 1:
            detail = _error_text(out.errors) or " | ".join(text.strip().splitlines()[-3:]) or "no output"
            why = f" ({out.no_timed_reason})" if ok and out.no_timed_reason else ""
            raise DeviceError(f"benchmark_model failed on {key} (exit {exit_code}){why}: {detail}")
        stats, source = out.to_stats()
    except (ValueError, OverflowError, KeyError, IndexError, OutputFormatError) as e:  # a garbled line
        raise DeviceError(f"{where}: unreadable output ({e})") from None
    check_plausible_stats(stats, where, DeviceError)
    return out, stats, source


class AndroidBackend(Backend):
    runtime = "litert"
    artifact_format = "tflite"

    def __init__(self, config: AndroidConfig, *, session: AdbSession | None = None) -> None:
        super().__init__(config.threads)
        self.config = config
        self.adb = session or AdbSession(
            config.target, config.adb_key, connect_timeout=config.connect_timeout_seconds,
            auth_timeout=config.auth_timeout_seconds, reconnect_attempts=config.reconnect_attempts,
            reconnect_delay=config.reconnect_delay_seconds)
        self.guard = ThermalGuard(self._read_zones, config.thermal_zones, config.cooldown_celsius,
                                  poll_seconds=config.cooldown_poll_seconds,
                                  timeout_seconds=config.cooldown_timeout_seconds, source=config.source)
        self._binary_sha: str | None = None
        self._props: dict[str, str] | None = None
        self._prepared = False
        self._pushed: list[str] = []  # remote files this build pushed or used, removed by close()
        self._remote_models: dict[str, str] = {}  # sha256 -> remote path of models already on the phone
        self._host_sha = ChecksumCache()
        self._perf_mode_before: bool | None = None
        self._perf_mode_set = False

    @classmethod
    def from_device(cls, device: Any, threads: int | None = None, **_: Any) -> AndroidBackend:
        opts = dict(device.options)
        return cls(AndroidConfig.from_options(device.name, device.source or device.name,
                                              int(threads or device.threads), opts))

    # ---- paths ---------------------------------------------------------------------------------------------
    @property
    def remote_binary(self) -> str:
        return posixpath.join(self.config.remote_dir, BINARY_NAME)

    @property
    def remote_models(self) -> str:
        return posixpath.join(self.config.remote_dir, "models")

    # ---- identity (no phone needed for the settings) -------------------------------------------------------
    def binary_sha256(self) -> str:
        if self._binary_sha is None:
            # A missing or non-executable file fails here, before any connection, with the fix.
            elf_abi(self.config.benchmark_binary, self.config.source)
            self._binary_sha = sha256_file(self.config.benchmark_binary)
        return self._binary_sha

    def runtime_version(self) -> str:
        # benchmark_model prints no version; its checksum identifies the build (a new binary is a new config).
        return f"benchmark_model sha256:{self.binary_sha256()[:16]}"

    def use_dtype(self, dtype: str) -> None:
        if dtype == "fp16" and not (self.config.xnnpack or self.config.gpu):
            from latency_lut.quantize import DtypeError

            raise DtypeError(f"device {self.config.name!r} (delegate {self.config.delegate!r}) cannot run dtype "
                             "'fp16': benchmark_model runs fp16 inference with the xnnpack or gpu delegate; set "
                             f"delegate: xnnpack in {self.config.source}, or use --dtype fp32 or int8")
        super().use_dtype(dtype)

    def settings(self) -> dict[str, Any]:
        c = self.config
        return {**super().settings(), "cpu_mask": c.cpu_mask, "xnnpack": c.xnnpack, "gpu": c.gpu, "nnapi": c.nnapi,
                "op_profiling": c.op_profiling, "fixed_performance_mode": c.fixed_performance_mode}

    def properties(self) -> dict[str, str]:
        """The phone's getprop table, read once per build."""
        if self._props is None:
            text = self.adb.check("getprop", what="getprop")
            self._props = {m.group(1): m.group(2) for m in re.finditer(r"^\[([^\]]+)\]: \[(.*)\]\s*$", text, re.M)}
        return self._props

    def fingerprint(self) -> str:
        p = self.properties()
        serial = p.get("ro.serialno") or p.get("ro.boot.serialno") or self.config.target.serial or "?"
        return f"android|{serial}|{p.get('ro.product.model', '?')}"

    def device_info(self) -> dict[str, Any]:
        p = self.properties()
        cpus = self.adb.check(
            "for c in /sys/devices/system/cpu/cpu[0-9]*; do "
            'printf "%s %s %s\\n" "${c##*/}" "$(cat "$c/cpufreq/cpuinfo_max_freq" 2>/dev/null)" '
            '"$(cat "$c/cpufreq/scaling_governor" 2>/dev/null)"; done', what="reading CPU frequencies")
        freqs: dict[str, int] = {}
        governors: dict[str, str] = {}
        for line in cpus.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                freqs[parts[0]] = int(parts[1])
            if len(parts) >= 3:
                governors[parts[0]] = parts[2]
        soc = " ".join(x for x in (p.get("ro.soc.manufacturer"), p.get("ro.soc.model")) if x) or \
            p.get("ro.board.platform") or p.get("ro.hardware", "")
        return {
            "model": p.get("ro.product.model", ""),
            "manufacturer": p.get("ro.product.manufacturer", ""),
            "soc": soc,
            "board": p.get("ro.board.platform", ""),
            "android": p.get("ro.build.version.release", ""),
            "sdk": p.get("ro.build.version.sdk", ""),
            "abi": p.get("ro.product.cpu.abi", ""),
            "build": p.get("ro.build.fingerprint", ""),
            "serial": p.get("ro.serialno", ""),
            "transport": self.config.target.describe(),
            "cpu_max_freq_khz": freqs,
            "governor": sorted(set(governors.values())),
            "governors": governors,
            "cpu_mask": self.config.cpu_mask,
            "benchmark_model_sha256": self.binary_sha256(),
            "thermal_zones": list(self.config.thermal_zones),
            "cooldown_celsius": self.config.cooldown_celsius,
        }

    # ---- one-time setup ------------------------------------------------------------------------------------
    def _abis(self) -> list[str]:
        p = self.properties()
        listed = p.get("ro.product.cpu.abilist") or p.get("ro.product.cpu.abi", "")
        return [a.strip() for a in listed.split(",") if a.strip()]

    def _check_binary_abi(self) -> None:
        abi = elf_abi(self.config.benchmark_binary, self.config.source)
        phone = self._abis()
        if abi is not None and phone and abi not in phone:
            raise DeviceError(
                f"benchmark binary {self.config.benchmark_binary} is built for {abi} but the phone runs "
                f"{', '.join(phone)}: download benchmark_model for {phone[0]} (see docs/android.md) and set "
                f"benchmark_binary in {self.config.source}")

    def _remote_checksums(self, pattern: str) -> dict[str, str]:
        """sha256 -> path of the phone's files matching ``pattern`` (a quoted folder plus a glob)."""
        res = self.adb.shell(f"sha256sum {pattern} 2>/dev/null", what="checksumming files on the phone")
        out = {}
        for line in res.output.splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2 and re.fullmatch(r"[0-9a-f]{64}", parts[0]):
                out[parts[0]] = parts[1].strip()
        return out

    def _prepare(self) -> None:
        if self._prepared:
            return
        c = self.config
        self._check_binary_abi()
        self.adb.check(quote("mkdir", "-p", c.remote_dir, self.remote_models), what=f"creating {c.remote_dir}")
        self._install_binary()
        for sha, path in self._remote_checksums(quote(self.remote_models) + "/*.tflite").items():
            self._remote_models[sha] = path
        if c.fixed_performance_mode:
            self._enable_performance_mode()
        self._prepared = True

    def _install_binary(self) -> None:
        sha = self.binary_sha256()
        on_phone = self._remote_checksums(quote(self.remote_binary))
        if sha not in on_phone:
            self.adb.push(self.config.benchmark_binary, self.remote_binary, mode=0o755, what="push of benchmark_model")
            if sha not in self._remote_checksums(quote(self.remote_binary)):
                raise DeviceError(f"benchmark_model arrived corrupted on the phone (checksum mismatch at "
                                  f"{self.remote_binary}); check the cable or storage and rerun")
        self._pushed.append(self.remote_binary)
        self.adb.shell(quote("chmod", "755", self.remote_binary), what="chmod of benchmark_model")
        # Run it once: a binary the phone cannot execute fails here with the reason, not on the first op.
        probe = self.adb.shell(quote("taskset", self.config.cpu_mask, self.remote_binary,
                                     "--graph=" + posixpath.join(self.config.remote_dir, ".no-such-model.tflite")),
                               what="a trial run of benchmark_model")
        if "STARTING!" not in probe.output and (probe.exit_code in (126, 127) or _EXEC_FAILURE.search(probe.output)):
            tail = " | ".join(probe.output.strip().splitlines()[-2:]) or f"exit {probe.exit_code}"
            raise DeviceError(
                f"benchmark_model does not run on the phone ({tail}): use the build for its ABI "
                f"({', '.join(self._abis()) or 'see getprop ro.product.cpu.abi'}), see docs/android.md")
        if "taskset" in probe.output and ("invalid" in probe.output.lower() or "failed" in probe.output.lower()):
            raise DeviceError(f"taskset rejected cpu_mask {self.config.cpu_mask!r} in {self.config.source}: "
                              f"{probe.output.strip().splitlines()[0]}; see docs/android.md for finding the mask")

    def _perf_mode_now(self) -> bool | None:
        res = self.adb.shell("dumpsys power", what="dumpsys power")
        m = re.search(r"fixed.?performance.?mode\w*\s*[=:]\s*(true|false)", res.output, re.IGNORECASE)
        return None if m is None else m.group(1).lower() == "true"

    def _enable_performance_mode(self) -> None:
        self._perf_mode_before = self._perf_mode_now()
        res = self.adb.shell(quote("cmd", "power", "set-fixed-performance-mode-enabled", "true"),
                             what="fixed performance mode")
        if not res.ok:
            raise DeviceError(
                f"the phone refused fixed performance mode ({res.output.strip()[:120] or res.exit_code}); it needs "
                f"Android 11+: set fixed_performance_mode: false in {self.config.source}")
        self._perf_mode_set = True

    # ---- per op --------------------------------------------------------------------------------------------
    def _read_zones(self) -> str:
        return self.adb.shell(READ_ZONES, what="reading thermal zones").output

    def ensure_model(self, artifact: Path) -> str:
        """The model's path on the phone; pushed only if no file there has the same checksum."""
        sha = self._host_sha(artifact)
        if sha in self._remote_models:
            self._pushed.append(self._remote_models[sha])  # used by this build: cleaned up with the rest
            return self._remote_models[sha]
        remote = posixpath.join(self.remote_models, f"{sha[:20]}.tflite")
        self.adb.push(artifact, remote, what=f"push of {artifact.name}")
        self._pushed.append(remote)
        if sha not in self._remote_checksums(quote(remote)):
            raise DeviceError(f"{artifact.name} arrived corrupted on the phone (checksum mismatch at {remote}); "
                              "check the cable or storage and rerun")
        self._remote_models[sha] = remote
        return remote

    def command(self, remote_model: str, protocol: Protocol) -> str:
        """The benchmark command line, every word quoted."""
        return quote("taskset", self.config.cpu_mask, self.remote_binary, f"--graph={remote_model}",
                     *benchmark_flags(self.config, self.threads, protocol, self.dtype))

    def measure(self, spec: OpSpec, artifact: Path | None, protocol: Protocol) -> RunResult:
        if artifact is None:
            raise DeviceError(f"no .tflite artifact for {spec.key}; the Android backend runs exported models only")
        self._prepare()
        remote = self.ensure_model(Path(artifact))
        before: ThermalReading | None = self.guard.wait_until_cool() if self.guard.enabled else None
        # Warmup and timed runs are each capped at max_secs by the tool; load and init come on top.
        timeout = 2 * protocol.max_seconds + 120
        res = self.adb.shell(self.command(remote, protocol), timeout=timeout, what=f"benchmark of {spec.key}")
        out, stats, source = read_output(res.output, res.ok, spec.key, res.exit_code, self.config.name)
        after = self.guard.read() if self.guard.enabled else None
        extra: dict[str, Any] = {"stats_source": source, "printed": list(out.timed.printed),
                                 "timings_us": out.timings, "reconnects": self.adb.reconnects}
        if before is not None and after is not None:
            extra.update(temperature_c=round(before.celsius, 2), temperature_after_c=round(after.celsius, 2),
                         thermal_wait_seconds=before.waited_seconds, zones_c=before.zones)
        if out.nodes:
            extra["op_profile"] = [n.to_dict() for n in out.nodes]
        return RunResult(samples_ms=[], stats=stats, extra=extra)

    # ---- teardown ------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Restore the performance mode and remove what was pushed (unless keep_files); never raises."""
        if not self.adb.connected:
            return
        try:
            if self._perf_mode_set:
                restore = bool(self._perf_mode_before)  # unknown before = off, Android's default after boot
                self.adb.shell(quote("cmd", "power", "set-fixed-performance-mode-enabled", _bool(restore)),
                               what="restoring the performance mode", attempts=1)
            if not self.config.keep_files and self._pushed:
                files = sorted(set(self._pushed))
                self.adb.shell(quote("rm", "-f", *files) + "; " +
                               quote("rmdir", self.remote_models, self.config.remote_dir) + " 2>/dev/null",
                               what="removing pushed files", attempts=1)
        except Exception as e:  # cleanup after a lost phone must not hide the error that ended the build
            log.warning("could not clean up the phone: %s", e)
        finally:
            self.adb.close()
