"""fbnet-lut's runner on a Linux board: pushed over SSH once, then fed one request per JSON line on stdin.

Self-contained on purpose: it needs only the Python standard library (3.7+), numpy and the board's runtime
(``tflite_runtime`` or ``ai_edge_litert`` for .tflite models, ``onnxruntime`` for .onnx models). It never imports
fbnet-lut, which is not installed on the board.

Protocol (one JSON object per line, both ways). On start it writes a ``hello`` line (versions and the board's
description) or an ``error`` line with a ``kind`` (``missing_runtime``, ``cpu_mask``, ``governor``, ...) and exits.
Then, per request ``{"id": N, "cmd": ...}``:

- ``have``     which of the given model files are present with the right checksum;
- ``put``      write a model (base64) under its checksum, verified before it is renamed into place;
- ``measure``  time one model under the protocol; the raw samples come back in ``samples`` lines, then ``done``;
- ``zones``    the thermal zones, one ``thermal_zoneN<TAB>type<TAB>millidegrees`` line each;
- ``remove``   delete models; ``bye`` restore the cpufreq governor and exit.

A failed request answers ``{"id": N, "error": kind, "message": ...}``; the runner keeps serving.
The cpufreq governor, when one is asked for, is saved to a file before it is changed and restored on exit (also
on SIGHUP/SIGTERM, as when the SSH connection drops); a runner killed outright leaves the file, and the next runner
restores from it.
"""

import argparse
import base64
import errno
import glob
import hashlib
import json
import os
import platform
import signal
import socket
import sys
import time

PROTOCOL_VERSION = 1
SYSFS = os.environ.get("FBNET_LUT_SYSFS", "/sys")  # another root only where /sys cannot be written (test boards)
OUT = sys.stdout


def emit(obj):
    OUT.write(json.dumps(obj, separators=(",", ":")) + "\n")
    OUT.flush()



def _random(rng, shape, dtype):  # noqa: ANN001, ANN202 - runs on the board, numpy only
    """Standard normal floats, or integers over the full range of an integer input."""
    import numpy as np

    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, size=tuple(shape), endpoint=True).astype(dt)
    return rng.standard_normal(tuple(shape)).astype(dt)

class Fail(Exception):
    def __init__(self, kind, message):
        Exception.__init__(self, message)
        self.kind = kind
        self.message = message


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_text(path, default=""):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").replace("\x00", "").strip()
    except OSError:
        return default


# ---- the runtime ----------------------------------------------------------------------------------------------

def package_version(name, module):
    try:
        from importlib import metadata
        return metadata.version(name)
    except Exception:
        return str(getattr(module, "__version__", "unknown"))


def numpy_version():
    import numpy

    return numpy.__version__


def load_runtime(runtime, litert_module):
    """(name, version, module) of the runtime; Fail('missing_runtime') naming the package to install."""
    try:
        import numpy  # noqa: F401
    except ImportError:
        raise Fail("missing_runtime", "numpy") from None
    if runtime == "onnxruntime":
        try:
            import onnxruntime
        except ImportError:
            raise Fail("missing_runtime", "onnxruntime") from None
        return "onnxruntime", package_version("onnxruntime", onnxruntime), onnxruntime
    candidates = [litert_module] if litert_module != "auto" else ["ai_edge_litert", "tflite_runtime"]
    for name in candidates:
        try:
            if name == "ai_edge_litert":
                from ai_edge_litert import interpreter as mod
                return name, package_version("ai-edge-litert", mod), mod
            from tflite_runtime import interpreter as mod
            return name, package_version("tflite-runtime", mod), mod
        except ImportError:
            continue
    raise Fail("missing_runtime", " or ".join(candidates))


class Session:
    """One loaded model, ready to invoke."""

    def __init__(self, runtime, mod, path, threads, options):
        import numpy as np

        rng = np.random.default_rng(0)
        if runtime == "onnxruntime":
            so = mod.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.execution_mode = mod.ExecutionMode.ORT_SEQUENTIAL
            levels = {"none": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                      "all": "ORT_ENABLE_ALL"}
            so.graph_optimization_level = getattr(mod.GraphOptimizationLevel,
                                                  levels[options.get("optimization", "all")])
            so.log_severity_level = 3
            sess = mod.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            inp = sess.get_inputs()[0]
            shape = [d if isinstance(d, int) else 1 for d in inp.shape]
            types = {"tensor(uint8)": np.uint8, "tensor(int8)": np.int8}  # an int8 LUT's models have 8-bit I/O
            feed = {inp.name: _random(rng, shape, types.get(inp.type, np.float32))}
            run = sess.run
            self.call = lambda: run(None, feed)
        else:
            kwargs = {"model_path": path, "num_threads": threads}
            types = getattr(mod, "OpResolverType", None)
            if types is not None:
                kwargs["experimental_op_resolver_type"] = (
                    types.AUTO if options.get("xnnpack", True) else types.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            it = mod.Interpreter(**kwargs)
            it.allocate_tensors()
            d = it.get_input_details()[0]
            it.set_tensor(d["index"], _random(rng, d["shape"], d["dtype"]))
            self.call = it.invoke


def time_calls(fn, protocol):
    """Warmup calls, then timed calls until both ``runs`` and ``min_seconds`` are reached (within the caps).

    The same loop as fbnet-lut's measure.time_callable on the host (kept in step by a test), so that a board
    measures exactly what a local build measures.
    """
    for _ in range(int(protocol["warmup"])):
        fn()
    samples = []
    wall = time.perf_counter_ns
    clock = time.thread_time_ns if protocol.get("clock") == "thread_cpu" else wall
    min_ns, max_ns = float(protocol["min_seconds"]) * 1e9, float(protocol["max_seconds"]) * 1e9
    runs, max_runs = int(protocol["runs"]), int(protocol["max_runs"])
    start = wall()
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        samples.append((t1 - t0) / 1e6)
        n, elapsed = len(samples), wall() - start
        if n >= max_runs or (n >= runs and (elapsed >= min_ns or elapsed >= max_ns)):
            return samples


# ---- the board ------------------------------------------------------------------------------------------------

def cpu_dirs():
    return sorted(glob.glob(os.path.join(SYSFS, "devices/system/cpu/cpu[0-9]*")),
                  key=lambda p: int(os.path.basename(p)[3:]))


def cpufreq(name):
    out = {}
    for d in cpu_dirs():
        v = read_text(os.path.join(d, "cpufreq", name))
        if v:
            out[os.path.basename(d)] = int(v) if v.isdigit() else v
    return out


def cpu_model():
    fields = {}
    for line in read_text("/proc/cpuinfo").splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            fields.setdefault(k.strip().lower(), v.strip())
    for k in ("model name", "hardware", "cpu model", "processor"):
        if fields.get(k) and not fields[k].isdigit():
            return fields[k]
    return platform.processor() or platform.machine()


def os_release():
    for line in read_text("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return ""


def board_info():
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return {
        "model": read_text("/proc/device-tree/model")
        or read_text(os.path.join(SYSFS, "firmware/devicetree/base/model"))
        or read_text(os.path.join(SYSFS, "class/dmi/id/product_name")),
        "hostname": socket.gethostname(),
        "machine_id": read_text("/etc/machine-id"),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count() or 1,
        "machine": platform.machine(),
        "kernel": platform.release(),
        "os": os_release() or platform.system(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "affinity": affinity,
        "governors": cpufreq("scaling_governor"),
        "cpu_max_freq_khz": cpufreq("cpuinfo_max_freq"),
        "cpu_cur_freq_khz": cpufreq("scaling_cur_freq"),
    }


def read_zones():
    lines = []
    for z in sorted(glob.glob(os.path.join(SYSFS, "class/thermal/thermal_zone*"))):
        lines.append("{}\t{}\t{}".format(os.path.basename(z), read_text(os.path.join(z, "type")),
                                     read_text(os.path.join(z, "temp"))))
    return "\n".join(lines)


def parse_mask(text):
    mask = int(text, 16)
    return {i for i in range(mask.bit_length()) if mask >> i & 1}


class Governor:
    """Sets a cpufreq governor for the runner's lifetime; the previous one is saved to a file first."""

    def __init__(self, state_file):
        self.state_file = state_file
        self.saved = None

    def recover(self):
        """Restore what a runner that was killed outright left behind."""
        if os.path.exists(self.state_file):
            try:
                with open(self.state_file) as f:
                    self.saved = json.load(f)
            except ValueError:
                self.saved = None
            self.restore()

    def set(self, governor):
        paths = [os.path.join(d, "cpufreq", "scaling_governor") for d in cpu_dirs()]
        paths = [p for p in paths if os.path.exists(p)]
        if not paths:
            raise Fail("governor", "this board has no cpufreq governors to set")
        before = {p: read_text(p) for p in paths}
        avail = read_text(os.path.join(os.path.dirname(paths[0]), "scaling_available_governors")).split()
        if avail and governor not in avail:
            raise Fail("governor", f"governor {governor!r} is not offered by this board (it has: {' '.join(avail)})")
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(before, f)
        os.rename(tmp, self.state_file)
        self.saved = before
        for p in paths:
            try:
                with open(p, "w") as f:
                    f.write(governor)
            except OSError as e:
                self.restore()
                raise Fail("governor", f"cannot write {p} ({e.strerror})") from None

    def restore(self):
        if self.saved is None:
            return
        for p, value in self.saved.items():
            try:
                with open(p, "w") as f:
                    f.write(value)
            except OSError:
                pass
        self.saved = None
        try:
            os.remove(self.state_file)
        except OSError:
            pass


# ---- serving --------------------------------------------------------------------------------------------------

def disk_error(e, what):
    if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return Fail("disk_full", f"no space left on the board's disk while writing {what}")
    return Fail("write", "cannot write {}: {}".format(what, getattr(e, "strerror", None) or e))


class Runner:
    def __init__(self, args, runtime, mod):
        self.args = args
        self.runtime = runtime
        self.mod = mod
        self.models = os.path.join(args.dir, "models")

    def model_path(self, name):
        if os.sep in name or name.startswith(".") or not name:
            raise Fail("bad_request", f"bad model name {name!r}")
        return os.path.join(self.models, name)

    def have(self, req):
        out = []
        for name, sha in req["models"]:
            path = self.model_path(name)
            if os.path.exists(path) and sha256_file(path) == sha:
                out.append(name)
        return {"have": out}

    def put(self, req):
        path = self.model_path(req["name"])
        data = base64.b64decode(req["data"])
        if hashlib.sha256(data).hexdigest() != req["sha256"]:
            raise Fail("checksum", "{} arrived corrupted (checksum mismatch)".format(req["name"]))
        tmp = path + ".part"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            try:
                os.remove(tmp)
            except OSError:
                pass
            raise disk_error(e, path) from None
        if sha256_file(tmp) != req["sha256"]:
            os.remove(tmp)
            raise Fail("checksum", f"{path} was corrupted on the board's disk (checksum mismatch)")
        os.rename(tmp, path)
        return {"ok": True}

    def measure(self, req):
        path = self.model_path(req["model"])
        if not os.path.exists(path):
            raise Fail("missing_model", f"{path} is not on the board")
        t0 = time.perf_counter()
        session = Session(self.runtime, self.mod, path, int(req["threads"]), req.get("options", {}))
        load_s = time.perf_counter() - t0
        samples = time_calls(session.call, req["protocol"])
        for i in range(0, len(samples), 512):  # after the timing loop: writing never interleaves with the runs
            emit({"id": req["id"], "samples": samples[i:i + 512]})
        return {"done": len(samples), "load_seconds": round(load_s, 6)}

    def remove(self, req):
        for name in req["models"]:
            try:
                os.remove(self.model_path(name))
            except OSError:
                pass
        return {"ok": True}

    def serve(self):
        for line in sys.stdin:
            if not line.strip():
                continue
            req = json.loads(line)
            cmd = req.get("cmd")
            try:
                if cmd == "bye":
                    emit({"id": req.get("id"), "ok": True})
                    return
                handler = {"have": self.have, "put": self.put, "measure": self.measure,
                           "zones": lambda r: {"text": read_zones()}, "remove": self.remove}.get(cmd)
                if handler is None:
                    raise Fail("bad_request", f"unknown command {cmd!r}")
                reply = handler(req)
            except Fail as e:
                reply = {"error": e.kind, "message": e.message}
            except Exception as e:  # a runtime that rejects a model: reported, and the runner keeps serving
                reply = {"error": "runtime", "message": "{}: {}".format(type(e).__name__, str(e).splitlines()[0]
                                                                   if str(e) else "")}
            reply["id"] = req.get("id")
            emit(reply)


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", required=True)
    p.add_argument("--runtime", required=True, choices=["litert", "onnxruntime"])
    p.add_argument("--litert-module", default="auto", choices=["auto", "tflite_runtime", "ai_edge_litert"])
    p.add_argument("--cpu-mask", default="")
    p.add_argument("--governor", default="")
    args = p.parse_args(argv)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    governor = Governor(os.path.join(args.dir, "governor.saved"))
    try:
        try:
            os.makedirs(os.path.join(args.dir, "models"), exist_ok=True)
            governor.recover()
            name, version, mod = load_runtime(args.runtime, args.litert_module)
            if args.cpu_mask:
                cpus = parse_mask(args.cpu_mask)
                try:
                    os.sched_setaffinity(0, cpus)
                except (OSError, ValueError) as e:
                    raise Fail("cpu_mask", "cannot pin to CPUs {} ({}); the board has CPUs {}".format(
                        sorted(cpus), getattr(e, "strerror", None) or e, sorted(os.sched_getaffinity(0)))) from None
            if args.governor:
                governor.set(args.governor)
            info = board_info()
            info["governor_set"] = args.governor or None
            info["governor_before"] = sorted(set(governor.saved.values())) if governor.saved else None
        except Fail as e:
            emit({"event": "error", "kind": e.kind, "message": e.message, "python": platform.python_version()})
            return 3
        except OSError as e:
            err = disk_error(e, args.dir)
            emit({"event": "error", "kind": err.kind, "message": err.message})
            return 3
        emit({"event": "hello", "protocol": PROTOCOL_VERSION, "runner_sha256": sha256_file(os.path.abspath(__file__)),
              "runtime_module": name, "runtime_version": version, "numpy": numpy_version(),
              "info": info})
        Runner(args, name, mod).serve()
        return 0
    finally:
        governor.restore()


if __name__ == "__main__":
    sys.exit(main())
