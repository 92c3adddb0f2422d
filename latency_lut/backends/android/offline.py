"""Offline Android: a bundle of micro-models and a script for a phone this host cannot reach, and its log back in.

``fbnet-lut build --device pixel --bundle DIR`` writes::

    <bundle>/
      manifest.json          bundle id, device, settings, protocol, space, key -> model file
      models/<key>.tflite
      benchmark_model        the descriptor's benchmark_binary, when this host has it
      run_on_phone.sh        runs every model with benchmark_model (pinned, cooled down), output on stdout
      run_with_adb.sh        from a computer with adb: push the bundle, run it, pull the log
      README.md

Every run is named ``fbnet-lut/<bundle id>/<key>`` (``--benchmark_name``), and its model is
``.../models/<key>.tflite`` (``--graph``); benchmark_model prints both, and ingest maps a run to its op by them
(the name when printed, else the ``Graph:`` path), so a log may hold other output, several runs of a model, or
come in any order. A run of another bundle, a model that matches no op, or a run with other settings is an error
naming the file and line. A model run several times counts with its last complete run (earlier ones are listed as
``repeated``); a model without a complete run is listed as ``failed`` with the reason, and the LUT stays marked
incomplete until a later log brings it.

The configuration is the descriptor's (threads, CPU mask, delegate, protocol, benchmark_model build) with the
fingerprint ``android|offline|<device>``: the host never sees the phone, so offline results are kept apart from
those of a live build over ADB.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import shlex
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from latency_lut import __version__
from latency_lut.backends.android.adb import quote
from latency_lut.backends.android.backend import BINARY_NAME, AndroidBackend, benchmark_flags
from latency_lut.backends.android.config import AndroidConfig
from latency_lut.backends.ios.bundle import (
    NAME_PREFIX,
    BundleResult,
    ModelEntry,
    failed_ident,
    place_bundle,
    split_benchmark_name,
)
from latency_lut.backends.ios.bundle import Manifest as BundleManifest
from latency_lut.backends.ios.bundle import load_manifest as load_bundle_manifest
from latency_lut.backends.ios.errors import BundleError
from latency_lut.backends.tflite_benchmark import BenchmarkRun, OutputFormatError, parse
from latency_lut.checksums import sha256_file
from latency_lut.errors import DeviceError
from latency_lut.measure import GatedResult, Protocol, RunResult
from latency_lut.ops import OpSpec
from latency_lut.store import Config, Store

PHONE_SCRIPT = "run_on_phone.sh"
ADB_SCRIPT = "run_with_adb.sh"


class OfflineAndroid(AndroidBackend):
    """The descriptor's Android configuration, for a phone measured offline (no ADB connection is ever made)."""

    def fingerprint(self) -> str:
        return f"android|offline|{self.config.name}"

    def device_info(self) -> dict[str, Any]:
        return {"platform": "android", "transport": "offline bundle", "cpu_mask": self.config.cpu_mask,
                "benchmark_model_sha256": self.binary_sha256()}

    def measure(self, spec: OpSpec, artifact: Path | None, protocol: Protocol) -> RunResult:
        raise DeviceError(f"{self.config.name} is measured offline: run the bundle's {PHONE_SCRIPT} on the phone "
                          "and ingest its output")

    def close(self) -> None:
        """Nothing to release: no connection was made."""


# ---- the bundle --------------------------------------------------------------------------------------------
@dataclass
class Manifest(BundleManifest):
    """An offline Android bundle's manifest: the iOS bundle's fields; ``app`` holds the phone's remote_dir, and
    each model's ``params`` is the script that runs it."""

    FORMAT: ClassVar[str] = "fbnet-lut-android-bundle"
    WHAT: ClassVar[str] = "fbnet-lut Android bundle"

    @property
    def remote_dir(self) -> str:
        return str(self.app["remote_dir"])


def load_manifest(bundle: str | Path) -> Manifest:
    return load_bundle_manifest(bundle, Manifest)


def phone_script(m: Manifest, config: AndroidConfig, protocol: Protocol) -> str:
    """The POSIX sh script that runs every model of the bundle on the phone, output on stdout."""
    flags = quote(*benchmark_flags(config, m.threads, protocol, str(m.settings.get("dtype", "fp32"))))
    zones = " ".join(shlex.quote(str(z)) for z in config.thermal_zones)
    cool = config.cooldown_celsius
    lines = [
        "#!/system/bin/sh",
        f"# fbnet-lut offline Android bundle {m.bundle_id}: device {m.device}, {len(m.models)} models.",
        f"# On the phone: sh {PHONE_SCRIPT} > /data/local/tmp/fbnet-lut-{m.bundle_id}.log 2>&1",
        "# Then: fbnet-lut ingest --device DEVICE --bundle BUNDLE that.log   (see README.md)",
        'HERE="$(cd "$(dirname "$0")" && pwd)"',
        f'BIN="${{BENCHMARK_MODEL:-$HERE/{BINARY_NAME}}}"',
        f"MASK={shlex.quote(config.cpu_mask)}",
        f"ZONES={shlex.quote(zones)}",
        f"COOL_MC={int(cool * 1000) if cool is not None else ''}",
        f"COOL_TIMEOUT={int(config.cooldown_timeout_seconds)}",
        "",
        "hottest() {  # the hottest chosen thermal zone, millidegrees C (empty when none can be read)",
        "  max=",
        "  for z in /sys/class/thermal/thermal_zone*; do",
        '    [ -r "$z/temp" ] || continue',
        '    n="${z##*thermal_zone}"; t="$(cat "$z/type" 2>/dev/null)"; ok=',
        "    for p in $ZONES; do",
        '      case "$n" in $p) ok=1 ;; esac',
        '      case "$t" in $p) ok=1 ;; esac',
        "    done",
        '    [ -n "$ok" ] || continue',
        '    v="$(cat "$z/temp" 2>/dev/null)"',
        '    case "$v" in ""|*[!0-9-]*) continue ;; esac',
        '    if [ -z "$max" ] || [ "$v" -gt "$max" ]; then max="$v"; fi',
        "  done",
        '  echo "$max"',
        "}",
        "",
        "cool_down() {",
        '  [ -n "$COOL_MC" ] || return 0',
        "  waited=0",
        "  while :; do",
        '    h="$(hottest)"',
        '    if [ -z "$h" ] || [ "$h" -le "$COOL_MC" ] || [ "$waited" -ge "$COOL_TIMEOUT" ]; then return 0; fi',
        "    sleep 5; waited=$((waited + 5))",
        "  done",
        "}",
        "",
        "run() {  # KEY",
        "  cool_down",
        f'  taskset "$MASK" "$BIN" --graph="$HERE/models/$1.tflite" --benchmark_name="{NAME_PREFIX}/{m.bundle_id}/$1" '
        f"{flags}",
        '  echo "fbnet-lut: $1 exit $?"',
        "}",
        "",
        f'echo "fbnet-lut bundle: {m.bundle_id} ({len(m.models)} models)"',
        *(f"run {shlex.quote(x.key)}" for x in m.models),
        'echo "fbnet-lut: done"',
        "",
    ]
    return "\n".join(lines)


def adb_script(m: Manifest) -> str:
    remote = posixpath.join(m.remote_dir, f"bundle-{m.bundle_id}")
    log = f"fbnet-lut-{m.bundle_id}.log"
    return "\n".join([
        "#!/bin/sh",
        f"# Push bundle {m.bundle_id} to the phone, run it there and pull its log: sh {ADB_SCRIPT} [adb options]",
        "set -e",
        'HERE="$(cd "$(dirname "$0")" && pwd)"',
        f"REMOTE={shlex.quote(remote)}",
        'adb "$@" shell mkdir -p "$REMOTE"',
        'adb "$@" push "$HERE/models" "$HERE/' + PHONE_SCRIPT + '" "$REMOTE/"',
        f'if [ -f "$HERE/{BINARY_NAME}" ]; then adb "$@" push "$HERE/{BINARY_NAME}" "$REMOTE/" && '
        f'adb "$@" shell chmod 755 "$REMOTE/{BINARY_NAME}"; fi',
        f'adb "$@" shell sh "$REMOTE/{PHONE_SCRIPT}" > "$HERE/{log}" 2>&1',
        f'echo "log: $HERE/{log}"',
        "",
    ])


_NO_BINARY = "Put benchmark_model next to the script (or set BENCHMARK_MODEL=/path/to/it)."


def readme(m: Manifest, has_binary: bool) -> str:
    s = m.settings
    return f"""# fbnet-lut offline Android bundle `{m.bundle_id}`

Device `{m.device}`, space `{m.space['id']}`, {len(m.models)} models, {s['runtime_version']},
{s['threads']} thread(s) on CPU mask `{s['cpu_mask']}`, XNNPACK {'on' if s['xnnpack'] else 'off'},
{m.protocol['warmup']} warmup + at least {m.protocol['runs']} timed runs per model.
{'' if m.whole_space else 'This bundle holds a subset of the space (built with --only).'}

## With adb (a computer next to the phone)
    sh {ADB_SCRIPT}            # adb options pass through, e.g. sh {ADB_SCRIPT} -s SERIAL
writes `fbnet-lut-{m.bundle_id}.log` here.

## On the phone itself
Copy this folder to the phone (e.g. /data/local/tmp/bundle-{m.bundle_id}), then in a shell there:
    sh {PHONE_SCRIPT} > fbnet-lut-{m.bundle_id}.log 2>&1
{'' if has_binary else _NO_BINARY}
Keep the phone charged, other apps closed, the screen on. A `logcat` dump of the benchmark APK works as well.

## Back here
    fbnet-lut ingest --device {m.device} --bundle <this folder> fbnet-lut-{m.bundle_id}.log
Ingest as many partial logs as you like: missing models are listed and the LUT stays marked incomplete until all
{len(m.models)} have a result; a log ingested twice adds nothing.
"""


def make_bundle(specs: Sequence[OpSpec], artifacts: Mapping[str, Path], backend: OfflineAndroid, config: Config,
                protocol: Protocol, space: dict[str, Any], whole_space: bool, *, root: Path,
                path: Path | None = None, failed: Mapping[str, str] | None = None) -> BundleResult:
    """Write (or find up to date) the bundle of ``specs`` at ``path`` (default ``root/<device>-<space>-<id>``);
    ``failed`` are the blocks left out because they failed to export (key -> reason), recorded in the manifest."""
    hashes = {s.key: sha256_file(Path(artifacts[s.key])) for s in specs}
    ident = {"config": [config.device, config.fingerprint, config.runtime, config.settings], "space": space,
             "models": [[s.key, hashes[s.key]] for s in specs], **failed_ident(failed)}
    bundle_id = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]
    models = [ModelEntry(s.key, "models", f"models/{s.key}.tflite", PHONE_SCRIPT, hashes[s.key],
                         Path(artifacts[s.key]).stat().st_size) for s in specs]
    m = Manifest(bundle_id, config.device, config.fingerprint, config.runtime, config.settings, protocol.to_dict(),
                 space, {"platform": "android", "remote_dir": backend.config.remote_dir}, models, whole_space,
                 created=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()), failed=dict(failed or {}))
    target = Path(path) if path is not None else root / f"{config.device}-{space['id']}-{bundle_id[:12]}"

    def fill(tmp: Path) -> None:
        (tmp / "models").mkdir()
        for s, x in zip(specs, models):
            shutil.copy2(artifacts[s.key], tmp / x.file)
        binary = backend.config.benchmark_binary
        if binary.is_file():
            shutil.copy2(binary, tmp / BINARY_NAME)
        (tmp / PHONE_SCRIPT).write_text(phone_script(m, backend.config, protocol))
        (tmp / ADB_SCRIPT).write_text(adb_script(m))
        for script in (PHONE_SCRIPT, ADB_SCRIPT):
            (tmp / script).chmod(0o755)
        (tmp / "README.md").write_text(readme(m, binary.is_file()))

    return place_bundle(target, m, fill)


# ---- results in ------------------------------------------------------------------------------------------------
@dataclass
class Found:
    """One model's result read from a log."""

    key: str
    run: BenchmarkRun
    source: str

    @property
    def digest(self) -> str:
        """Identity of the measurement (not of the file), to recognise it when ingested again."""
        t = self.run.timed
        assert t is not None
        core = [self.key, t.count, t.avg, t.std, t.min, t.max, t.median, t.p5, t.p95]
        return hashlib.sha256(json.dumps(core).encode()).hexdigest()[:20]


@dataclass
class Report:
    manifest: Manifest
    sources: list[str]
    results: dict[str, Found] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    repeated: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    other: list[str] = field(default_factory=list)  # runs of models that are not ours (no name, no bundle path)
    flagged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def _key_of(run: BenchmarkRun, m: Manifest, source: str) -> str | None:
    """The op key a run measured, from its benchmark name or its Graph path; None for a run that is not ours."""
    by_graph = {x.graph: x.key for x in m.models}
    name_key = None
    if run.name and run.name.startswith(NAME_PREFIX + "/"):
        ident = split_benchmark_name(run.name)
        line = run.param_lines.get("Benchmark name", run.line)
        if ident is None:
            raise OutputFormatError(f"{source}, line {line}: benchmark name {run.name!r} is not "
                                    f"'{NAME_PREFIX}/<bundle id>/<key>'")
        if ident[0] != m.bundle_id:
            raise BundleError(f"{source}, line {line}: this log is from bundle {ident[0]}, not from bundle "
                              f"{m.bundle_id} ({m.path}); ingest it with that bundle's folder")
        name_key = ident[1]
    model = run.model
    graph_key = None
    if model:
        base = posixpath.basename(model.replace("\\", "/"))
        graph_key = by_graph.get(base)
        if graph_key is None and name_key is None:
            line = run.param_lines.get("Graph", run.line)
            raise OutputFormatError(f"{source}, line {line}: model {model!r} matches no op of bundle {m.bundle_id} "
                                    f"(its models are models/<key>.tflite); is this the log of another bundle?")
    key = name_key or graph_key
    if key is None:
        return None
    if key not in m.by_key():
        raise OutputFormatError(f"{source}, line {run.param_lines.get('Benchmark name', run.line)}: {key!r} is no op "
                                f"of bundle {m.bundle_id}")
    if name_key and graph_key and name_key != graph_key:
        raise OutputFormatError(f"{source}, line {run.param_lines.get('Graph', run.line)}: the run named {name_key} "
                                f"loaded {model}, the bundle's model of {graph_key}; the command was edited")
    if run.threads is not None and run.threads != m.threads:
        raise OutputFormatError(f"{source}, line {run.param_lines['Num threads']}: {key} ran with {run.threads} "
                                f"thread(s), the bundle asks for {m.threads}; these results belong to another "
                                "configuration")
    return key


def read_results(sources: Sequence[tuple[str, str]], m: Manifest) -> Report:
    """Map every (name, text) source to the bundle's keys; raise on anything that cannot be trusted."""
    rep = Report(m, [name for name, _ in sources])
    for name, text in sources:
        log = parse(text, name, strict=True)
        for run in log.runs:
            key = _key_of(run, m, name)
            if key is None:
                if run.has_results:
                    rep.other.append(f"{name}, line {run.line}: {run.model or run.name or 'unnamed run'}")
                continue
            if run.timed is None or run.timed.count < 1:
                if key not in rep.results:
                    rep.failed[key] = f"{name}, line {run.line}: {run.no_timed_reason}"
                continue
            if key in rep.results and rep.results[key].digest != Found(key, run, name).digest:
                rep.repeated.append(key)
            rep.results[key] = Found(key, run, name)
            rep.failed.pop(key, None)
    return rep


def ingest(sources: Sequence[tuple[str, str]], m: Manifest, store: Store, noise_threshold: float) -> Report:
    """Store every new result of ``sources`` for the bundle's configuration (nothing is written if one fails)."""
    rep = read_results(sources, m)
    config = m.config()
    stored: dict[str, set[str]] = {}
    for key, extra in store.extras(config):
        stored.setdefault(key, set()).add(str(extra.get("result_digest")))
    session: int | None = None
    for key, found in rep.results.items():
        if found.digest in stored.get(key, set()):
            rep.duplicates.append(key)
            continue
        if session is None:
            env = {"platform": "android", "transport": "offline bundle", "bundle_id": m.bundle_id,
                   "results": rep.sources}
            session = store.start_session(config, env, __version__)
        if key in stored:
            rep.replaced.append(key)
        stats, how = found.run.to_stats()
        t = found.run.timed
        assert t is not None
        extra = {"source": "android-offline", "stats_source": how, "printed": list(t.printed),
                 "log": found.source, "log_line": t.line, "timings_us": found.run.timings,
                 "bundle_id": m.bundle_id, "result_digest": found.digest}
        if found.run.nodes:
            extra["op_profile"] = [n.to_dict() for n in found.run.nodes]
        run = RunResult([], stats, extra)
        flagged = stats.noise > noise_threshold
        store.add(session, key, GatedResult([run], 0, flagged))
        rep.added.append(key)
        if flagged:
            rep.flagged.append(key)
    done = store.completed_keys(config)
    rep.missing = [k for k in m.keys if k not in done]
    return rep
