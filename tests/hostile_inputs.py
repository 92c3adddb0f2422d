"""Every kind of bad input and fault a hostile user tries on the CLI, run as real subprocesses, and a report.

Each case runs ``fbnet-lut ARGS`` in a fresh copy of a small world (a valid LUT, a store, an iOS bundle with
results, device nodes, pipes, links) and passes when

- the command exits 2 with one ``Error: ...`` line on stderr (at most 500 characters, no traceback) that holds the
  case's fragments -- or, for the few cases that must work (symlinked outputs), exits 0 and passes its check;
- it ends within the time limit (10 s: nothing hangs; 30 s for the cases that import torch, which alone takes
  ~5 s on a shared 2-core host);
- no file of the world changed, appeared or vanished except the outputs the case names (nothing lost, nothing
  written outside what was asked; device nodes stay device nodes, no ``-journal`` appears beside them).

Cases that reproduce a numbered case of issue 13 carry its number; ``tests/cli/test_hostile_inputs.py`` runs
those as regression tests. The whole catalogue::

    python tests/hostile_inputs.py            # all cases, 2 at a time; prints the table and the counts
    python tests/hostile_inputs.py -k store   # cases whose name contains 'store'
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 10.0
SLOW_TIMEOUT = 30.0
TINY = ["--resolution", "32", "--width", "0.25"]
FAST = ["--warmup", "1", "--runs", "3", "--min-seconds", "0", "--retries", "0"]
IOS_KEYS = ["ir-in16x16x8-out8-k3-e1-g1-s1", "ir-in16x16x8-out8-k3-e3-g1-s1"]
LUT = "ok.json"  # a valid LUT of fbnet-64-w0.25 (device local, onnxruntime) in every case's world


@dataclass
class Case:
    name: str
    args: list[str]
    setup: Callable[[Path], None] | None = None
    issue: int | None = None  # the numbered case of issue 13 it reproduces
    fragments: tuple[str, ...] = ()
    expect: str = "error"  # or "ok"
    check: Callable[[Path], str | None] | None = None  # for "ok" cases: None when right, else what is wrong
    may_change: tuple[str, ...] = ()  # paths (relative to the world) an "ok" case may write
    env: dict[str, str] = field(default_factory=dict)  # values may use {world}
    teardown: Callable[[Path], None] | None = None
    slow: bool = False  # imports torch (~5 s on a shared 2-core host): SLOW_TIMEOUT instead of TIMEOUT


@dataclass
class Outcome:
    case: Case
    ok: bool
    seconds: float
    why: str = ""
    stderr: str = ""


# ---- the world ---------------------------------------------------------------------------------------------
def cli_env(world: Path, cache: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FBNET_LUT_")}
    env.update(PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""), FBNET_LUT_CACHE=str(cache),
               FBNET_LUT_STORE=str(world / "store.sqlite"))
    env.update({k: v.format(world=world) for k, v in (extra or {}).items()})
    return env


def make_world(root: Path, cache: Path) -> Path:
    """The files every case starts from: ok.json, store.sqlite, an iOS bundle b1 with good results."""
    sys.path.insert(0, str(REPO))
    from latency_lut.spaces import get_space
    from latency_lut.store import Store
    from latency_lut.synthetic import synthetic_lut

    world = root / "world"
    world.mkdir(parents=True)
    lut = synthetic_lut(get_space("fbnet", 64, 0.25))
    lut.header.update(device="local", device_kind="local", runtime="onnxruntime")
    lut.save(world / LUT)
    Store(world / "store.sqlite").close()
    env = cli_env(world, cache)
    only = [a for k in IOS_KEYS for a in ("--only", k)]
    subprocess.run([sys.executable, "-m", "latency_lut", "build", "--device", "iphonex", *TINY, *only, "--bundle",
                    "b1", "-q", "--json"], cwd=world, env=env, check=True, capture_output=True, timeout=600)
    bundle_id = json.loads((world / "b1" / "manifest.json").read_text())["bundle_id"]
    (world / "good.json").write_text(json.dumps(results_doc(bundle_id, 640.0)))
    # The store as a fresh build leaves it: only what the world's own commands wrote.
    return world


def results_doc(bundle_id: str, avg_us: float) -> dict:
    return {"format": "fbnet-lut-ios-results", "bundle_id": bundle_id, "unit": "us",
            "results": [{"key": k, "count": 50, "avg": avg_us, "std": 12.0, "min": min(avg_us, 600.0),
                         "max": max(avg_us, 700.0)} for k in IOS_KEYS]}


def snapshot(world: Path) -> dict[str, tuple]:
    """Every path under ``world`` with its kind and content (symlinks by target)."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(world):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            rel = str(p.relative_to(world))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", hashlib.sha1(p.read_bytes()).hexdigest())
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir",)
            else:
                out[rel] = ("node", stat.S_IFMT(st.st_mode), st.st_rdev)
    return out


# ---- helpers to build hostile files ------------------------------------------------------------------------
def write(rel: str, data: str | bytes) -> Callable[[Path], None]:
    def setup(w: Path) -> None:
        p = w / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return setup


def fifo(rel: str) -> Callable[[Path], None]:
    return lambda w: os.mkfifo(w / rel)


def device_node(rel: str, minor: int) -> Callable[[Path], None]:
    """A character device like /dev/null (minor 3), /dev/zero (5), /dev/full (7), made in the world (root only;
    without root the real /dev node is linked instead, which the guard must refuse just the same)."""
    def setup(w: Path) -> None:
        try:
            os.mknod(w / rel, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
        except PermissionError:
            os.symlink({3: "/dev/null", 5: "/dev/zero", 7: "/dev/full"}[minor], w / rel)
    return setup


def symlink(rel: str, target: str) -> Callable[[Path], None]:
    return lambda w: os.symlink(target, w / rel)


def hardlink(rel: str, target: str) -> Callable[[Path], None]:
    return lambda w: os.link(w / target, w / rel)


def both(*fns: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(w: Path) -> None:
        for f in fns:
            f(w)
    return setup


def mutate_lut(fn: Callable[[str], str]) -> Callable[[Path], None]:
    def setup(w: Path) -> None:
        (w / "bad.json").write_text(fn((w / LUT).read_text()))
    return setup


def mutate_entry(**fields: object) -> Callable[[str], str]:
    def fn(text: str) -> str:
        doc = json.loads(text)
        first = next(iter(doc["entries"].values()))
        first.update(fields)
        return json.dumps(doc)
    return fn


def bundle_results(fn: Callable[[str], dict | str]) -> Callable[[Path], None]:
    def setup(w: Path) -> None:
        bid = json.loads((w / "b1" / "manifest.json").read_text())["bundle_id"]
        doc = fn(bid)
        (w / "r.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return setup


def immutable(rel: str) -> Callable[[Path], None]:
    def setup(w: Path) -> None:
        if subprocess.run(["chattr", "+i", str(w / rel)], capture_output=True).returncode != 0:
            os.chmod(w / rel, 0o444)  # a filesystem without the attribute: read-only at least for non-root
    return setup


def mutable(rel: str) -> Callable[[Path], None]:
    return lambda w: subprocess.run(["chattr", "-i", str(w / rel)], capture_output=True) and None


ANDROID = ("kind: android\nname: bomb\nruntime: litert\ntransport: usb\ncpu_mask: 'f0'\n"
           "benchmark_binary: /bin/sh\n")
IOS = ("kind: ios\nname: bomb\nruntime: litert\napp_bundle_id: x.y\ntflite_version: '2.16'\n")


def laughs(field_name: str, levels: int = 9) -> str:
    """A billion-laughs bomb inside one list field: 10^levels values from ~1 KB, anchors nested in the value."""
    body = "[" + ", ".join(f"&l{i} [{', '.join(['lol'] * 10 if i == 0 else [f'*l{i - 1}'] * 10)}]"
                           for i in range(levels)) + "]"
    return f"{field_name}: {body}\n"


# ---- the catalogue ------------------------------------------------------------------------------------------
def cases() -> list[Case]:
    c: list[Case] = []
    add = c.append
    b = ["build", *TINY]

    # Outputs that would destroy the store, an input, or another output (issue cases 1-4).
    add(Case("store-as-lut-output", [*b, "--store", "s.sqlite", "-o", "s.sqlite"], write("s.sqlite", b""), 1,
             ("measurement store",)))
    add(Case("store-as-csv-output", [*b, "--store", "store.sqlite", "-o", "l.json", "--csv", "store.sqlite"],
             None, 2, ("measurement store",)))
    add(Case("lut-and-csv-same-file", [*b, "-o", "l.json", "--csv", "l.json"], None, 3, ("also given as -o",)))
    add(Case("show-csv-over-its-lut", ["show", LUT, "--csv", LUT], None, 4, ("input of this command",)))
    add(Case("store-wal-as-output", [*b, "-o", "store.sqlite-wal"], None, None, ("measurement store",)))
    add(Case("store-journal-as-csv", [*b, "--csv", "store.sqlite-journal"], None, None, ("measurement store",)))
    add(Case("hardlink-to-store-as-output", [*b, "-o", "h.json"], hardlink("h.json", "store.sqlite"), None,
             ("measurement store",)))
    add(Case("symlink-to-store-as-output", [*b, "-o", "ln.json"], symlink("ln.json", "store.sqlite"), None,
             ("measurement store",)))
    add(Case("show-csv-over-hardlink-of-lut", ["show", LUT, "--csv", "h.csv"], hardlink("h.csv", LUT), None,
             ("input of this command",)))
    add(Case("show-csv-over-symlink-to-lut", ["show", LUT, "--csv", "s.csv"], symlink("s.csv", LUT), None,
             ("input of this command",)))
    add(Case("validate-csv-over-lut", ["validate", "--lut", LUT, "--csv", LUT], None, None, ("also given as",)))
    add(Case("validate-plot-over-store", ["validate", "--lut", LUT, "--plot", "store.sqlite"], None, None,
             ("measurement store",)))
    add(Case("validate-lut-is-store", ["validate", "--lut", LUT, "--store", LUT], None, None,
             ("measurement store",)))
    add(Case("predict-measure-missing-store-is-lut", ["predict", "--lut", LUT, "-a", "fbnet_a", "--measure-missing",
                                                      "--store", LUT], None, None, ("measurement store",)))
    add(Case("ingest-output-over-results", ["ingest", "-d", "iphonex", "--bundle", "b1", "good.json", "-o",
                                            "good.json"], None, None, ("input of this command",)))
    add(Case("ingest-csv-over-store", ["ingest", "-d", "iphonex", "--bundle", "b1", "good.json", "--csv",
                                       "store.sqlite"], None, None, ("measurement store",)))
    add(Case("ios-build-csv-over-store", ["build", "-d", "iphonex", *TINY, "--only", IOS_KEYS[0], "--bundle", "b1",
                                          "--csv", "store.sqlite"], None, None, ("measurement store",)))

    # Outputs that are not regular files (23-25).
    add(Case("lut-output-device-node", [*b, "-o", "full"], device_node("full", 7), 23, ("device node",)))
    add(Case("csv-output-device-node", ["show", LUT, "--csv", "full"], device_node("full", 7), None,
             ("device node",)))
    add(Case("store-is-device-node", [*b, "--store", "null"], device_node("null", 3), 24, ("device node",)))
    add(Case("store-is-named-pipe", [*b, "--store", "p.sqlite"], fifo("p.sqlite"), None, ("named pipe",)))
    add(Case("lut-output-named-pipe", [*b, "-o", "p.json"], fifo("p.json"), None, ("named pipe",)))
    add(Case("csv-output-named-pipe", ["show", LUT, "--csv", "p.csv"], fifo("p.csv"), None, ("named pipe",)))
    add(Case("output-is-directory", [*b, "-o", "b1"], None, None, ("--output",)))
    add(Case("output-under-a-file", [*b, "-o", f"{LUT}/x.json"], None, None, ("is a file, not a folder",)))
    add(Case("output-symlink-to-device", ["show", LUT, "--csv", "l.csv"], symlink("l.csv", "/dev/null"), None,
             ("device node",)))
    add(Case("csv-output-symlink-is-followed", ["show", LUT, "--csv", "link.csv"],
             both(write("target.csv", "old\n"), symlink("link.csv", "target.csv")), 25, expect="ok",
             check=lambda w: None if (w / "link.csv").is_symlink() and (w / "target.csv").read_text().startswith(
                 "key,") else "the link was replaced or its target left stale", may_change=("target.csv",)))
    add(Case("csv-output-dangling-symlink-creates-target", ["show", LUT, "--csv", "link.csv"],
             symlink("link.csv", "new.csv"), None, expect="ok",
             check=lambda w: None if (w / "link.csv").is_symlink() and (w / "new.csv").is_file() else
             "the dangling link's target was not created", may_change=("new.csv",)))

    # The YAML of device descriptors (5, 8).
    add(Case("descriptor-laughs-in-thermal-zones", [*b, "-d", "d.yaml"], write("d.yaml", ANDROID +
             laughs("thermal_zones")), 5, ("alias bomb",)))
    add(Case("descriptor-laughs-in-product-types", [*b, "-d", "d.yaml"], write("d.yaml", IOS +
             laughs("product_types")), 5, ("alias bomb",)))
    add(Case("devices-folder-with-laughs", ["devices"], write("devs/bomb.yaml", ANDROID + laughs("thermal_zones")),
             5, ("bomb.yaml", "alias bomb"), env={"FBNET_LUT_DEVICES": "{world}/devs"}))
    add(Case("devices-folder-laughs-by-name", [*b, "-d", "bomb"], write("devs/bomb.yaml", IOS +
             laughs("product_types")), 5, ("alias bomb",), env={"FBNET_LUT_DEVICES": "{world}/devs"}))
    add(Case("descriptor-random-bytes", [*b, "-d", "r.yaml"], write("r.yaml", bytes(range(256)) * 8), 8,
             ("not UTF-8",)))
    add(Case("devices-folder-random-bytes", ["devices"], write("devs/r.yaml", os.urandom(4096) + b"\xff"), 8,
             ("r.yaml",), env={"FBNET_LUT_DEVICES": "{world}/devs"}))
    add(Case("descriptor-empty", [*b, "-d", "e.yaml"], write("e.yaml", ""), None, ("not a YAML mapping",)))
    add(Case("descriptor-top-level-list", [*b, "-d", "e.yaml"], write("e.yaml", "- a\n- b\n"), None,
             ("not a YAML mapping",)))
    add(Case("descriptor-deep-nesting", [*b, "-d", "e.yaml"], write("e.yaml", "name: " + "[" * 5000 + "]" * 5000),
             None, ("e.yaml",)))
    add(Case("descriptor-recursive-alias", [*b, "-d", "e.yaml"], write("e.yaml", ANDROID +
             "thermal_zones: &a [1, *a]\n"), None, ("recursive",)))
    add(Case("descriptor-python-tag", [*b, "-d", "e.yaml"], write("e.yaml", ANDROID +
             "description: !!python/object/apply:os.system ['touch pwned']\n"), None, ("e.yaml",)))
    add(Case("descriptor-named-pipe", [*b, "-d", "p.yaml"], fifo("p.yaml"), None, ("not a regular file",)))
    add(Case("descriptor-is-directory", [*b, "-d", "dir.yaml"], lambda w: (w / "dir.yaml").mkdir(), None,
             ("not a regular file",)))
    add(Case("descriptor-huge", [*b, "-d", "h.yaml"], write("h.yaml", "description: '" + "x" * 200_000 + "'\n"),
             None, ("limit",)))
    add(Case("descriptor-utf16", [*b, "-d", "u.yaml"], write("u.yaml", "kind: local\n".encode("utf-16")), None,
             ("not UTF-8",)))
    add(Case("descriptor-two-documents", [*b, "-d", "t.yaml"], write("t.yaml", "kind: local\n---\nkind: ios\n"),
             None, ("t.yaml",)))
    for fld, val, frag in (("threads", "1000000000", "threads"), ("threads", "-1", "threads"),
                           ("threads", "'4'", "wrong type"), ("threads", "~", None), ("kind", "martian", "kind"),
                           ("runtimes", "[[1]]", "runtimes"), ("colour", "red", "unknown field"),
                           ("name", "~", "name")):
        text = {"kind": "local", "name": "x", "runtime": "onnxruntime", fld: val}
        yaml_text = "".join(f"{k}: {v}\n" for k, v in text.items())
        if frag is None:  # a null field is the field left out: valid, so this one must fail later, on --threads
            add(Case(f"descriptor-{fld}-null-then-bad-option", [*b, "-d", "x.yaml", "--jobs", "0"],
                     write("x.yaml", yaml_text), None, ("--jobs",)))
        else:
            add(Case(f"descriptor-{fld}-{val.strip('~[]') or 'null'}", [*b, "-d", "x.yaml"],
                     write("x.yaml", yaml_text), None, (frag,)))
    add(Case("ios-descriptor-runs-1", ["build", "-d", "i.yaml", *TINY], write("i.yaml", IOS + "product_types: [x]\n"
             "runs: 1\n"), None, ("runs",)))
    add(Case("ios-descriptor-min-seconds-nan", ["build", "-d", "i.yaml", *TINY], write("i.yaml", IOS +
             "product_types: [x]\nmin_seconds: .nan\n"), None, ("min_seconds",)))
    add(Case("android-descriptor-timeout-null", [*b, "-d", "a.yaml"], write("a.yaml", ANDROID.replace(
        "/bin/sh", "/nonexistent/benchmark_model") + "connect_timeout_seconds: ~\n"), None, ("benchmark",)))

    # Numeric options (6, 10-13, 15-17).
    numeric = [("--threads", "100000", 6), ("--threads", "-3", 10), ("--noise-threshold", "nan", 11),
               ("--min-seconds", "inf", 12), ("--resolution", "100000", 13), ("--threads", "0", 15),
               ("--jobs", "0", 15), ("--jobs", "-4", 15), ("--noise-threshold", "-1", 16),
               ("--noise-threshold", "inf", None), ("--min-seconds", "nan", None), ("--min-seconds", "-1", None),
               ("--resolution", "0", None), ("--resolution", "-32", None), ("--width", "0", None),
               ("--width", "nan", None), ("--width", "inf", None), ("--width", "-1", None), ("--width", "1e308", None),
               ("--warmup", "-1", None), ("--warmup", "1e9", None), ("--runs", "0", None), ("--runs", "2", None),
               ("--runs", "1000000000000", None), ("--retries", "-1", None), ("--retries", "1000", None),
               ("--threads", "1.5", None), ("--jobs", "99999999999999999999", None)]
    for opt, val, issue in numeric:
        add(Case(f"build{opt}={val}", ["build", *(TINY if opt not in ("--resolution", "--width") else []), opt, val],
                 None, issue, (opt,)))
    for opt, val in (("--n", "1"), ("--n", "-5"), ("--rounds", "0"), ("--folds", "1"), ("--jobs", "0"),
                     ("--seed", "-1")):
        add(Case(f"validate{opt}={val}", ["validate", "--lut", LUT, opt, val], None, None, (opt,)))
    add(Case("show--top=-1", ["show", LUT, "--top", "-1"], None, 17, ("--top",)))
    add(Case("show--top=0", ["show", LUT, "--top", "0"], None, None, ("--top",)))

    # LUT files (7, 18, 19, 26).
    add(Case("show-named-pipe", ["show", "p.json"], fifo("p.json"), 7, ("named pipe",)))
    add(Case("predict-lut-named-pipe", ["predict", "--lut", "p.json", "-a", "fbnet_a"], fifo("p.json"), None,
             ("named pipe",)))
    add(Case("show-device-node", ["show", "zero"], device_node("zero", 5), None, ("device node",)))
    add(Case("lut-duplicate-entry-key", ["show", "bad.json"], mutate_lut(_duplicate_entry), 18, ("twice",)))
    add(Case("lut-duplicate-header-field", ["show", "bad.json"],
             mutate_lut(lambda t: t.replace('"header": {', '"header": {"device": "other", ', 1)), None, ("twice",)))
    add(Case("lut-entries-1.7e308", ["predict", "--lut", "bad.json", "-a", "fbnet_a", "--json"],
             mutate_lut(_all_entries(1.7e308)), 19, ("600000 ms",)))
    add(Case("lut-entry-1e400", ["show", "bad.json"], mutate_lut(lambda t: t.replace('"max": ', '"max": 1e400, "x":',
                                                                                     1)), None, ("bad.json",)))
    add(Case("lut-entry-nan-literal", ["show", "bad.json"], mutate_lut(mutate_entry(p90=float("nan"))), None,
             ("'p90'", "finite")))
    add(Case("lut-entry-infinity-literal", ["show", "bad.json", "--json"],
             mutate_lut(mutate_entry(max=float("inf"))), None, ("'max'",)))
    add(Case("lut-header-nan", ["show", "bad.json", "--json"], mutate_lut(
        lambda t: t.replace('"protocol": {}', '"protocol": {"runs": NaN}', 1)), None, ("header.protocol.runs",)))
    add(Case("lut-cin-as-string", ["show", "bad.json"], mutate_lut(mutate_entry(cin="16")), 26, ("'cin'",)))
    add(Case("lut-expansion-as-string", ["show", "bad.json"], mutate_lut(mutate_entry(expansion="6")), None,
             ("'expansion'",)))
    add(Case("lut-count-negative", ["show", "bad.json"], mutate_lut(mutate_entry(count=-1)), None, ("'count'",)))
    add(Case("lut-count-fraction", ["show", "bad.json"], mutate_lut(mutate_entry(count=2.5)), None, ("'count'",)))
    add(Case("lut-flagged-string", ["show", "bad.json"], mutate_lut(mutate_entry(flagged="yes")), None,
             ("flagged",)))
    add(Case("lut-extra-string", ["show", "bad.json"], mutate_lut(mutate_entry(extra="x")), None, ("extra",)))
    add(Case("lut-kernel-huge", ["show", "bad.json"], mutate_lut(mutate_entry(kernel=10**30)), None, ("bad.json",)))
    add(Case("lut-random-bytes", ["show", "r.json"], write("r.json", os.urandom(2048)), None, ("r.json",)))
    add(Case("lut-empty", ["show", "e.json"], write("e.json", ""), None, ("e.json",)))
    add(Case("lut-json-array", ["show", "a.json"], write("a.json", "[1, 2, 3]"), None, ("not a LUT",)))
    add(Case("lut-deep-nesting", ["show", "d.json"], write("d.json", "[" * 100_000 + "]" * 100_000), None,
             ("d.json",)))
    add(Case("lut-is-store", ["show", "store.sqlite"], None, None, ("store.sqlite",)))
    add(Case("lut-is-directory", ["show", "b1"], None, None, ("b1",)))
    add(Case("lut-missing", ["show", "nope.json"], None, None, ("does not exist",)))

    # predict (14, 20, 27).
    add(Case("predict-module-data-dependent-control-flow", ["predict", "--lut", LUT, "--module", "m.py:weird"],
             write("m.py", MODELS), 14, ("torch.fx",)))
    add(Case("predict-module-bad-input-shape", ["predict", "--lut", LUT, "--module", "m.py:conv", "--input-shape",
                                                "1,3,2,2"], write("m.py", MODELS), 14, ("Kernel size",)))
    add(Case("predict-module-wrong-channels", ["predict", "--lut", LUT, "--module", "m.py:conv", "--input-shape",
                                               "1,4,16,16"], write("m.py", MODELS), None, ("channels",)))
    add(Case("predict-module-huge-input-shape", ["predict", "--lut", LUT, "--module", "m.py:conv", "--input-shape",
                                                 "1,3,100000,100000"], write("m.py", MODELS), None,
             ("--input-shape",)))
    add(Case("predict-module-unsupported-layer", ["predict", "--lut", LUT, "--module", "m.py:upsample"],
             write("m.py", MODELS), None, ("no LUT op kind",)))
    add(Case("predict-module-import-fails", ["predict", "--lut", LUT, "--module", "m.py:x"],
             write("m.py", "raise SystemExit('boom')\n"), None, ("m.py",)))
    add(Case("predict-module-not-a-module", ["predict", "--lut", LUT, "--module", "m.py:three"],
             write("m.py", "three = 3\n"), None, ("neither an nn.Module",)))
    add(Case("predict-onnx-undefined-tensor", ["predict", "--lut", LUT, "--onnx", "u.onnx"], _broken_onnx, 20,
             ("undefined_w",)))
    add(Case("predict-onnx-random-bytes", ["predict", "--lut", LUT, "--onnx", "r.onnx"],
             write("r.onnx", os.urandom(512)), None, ("r.onnx",)))
    add(Case("predict-onnx-named-pipe", ["predict", "--lut", LUT, "--onnx", "p.onnx"], fifo("p.onnx"), None,
             ("p.onnx",)))
    add(Case("predict-arch-10000-characters", ["predict", "--lut", LUT, "-a", "k" * 10_000], None, 27,
             ("10000 characters",)))
    add(Case("predict-arch-huge-index", ["predict", "--lut", LUT, "-a", " ".join(["9" * 5000] * 22)], None, None,
             ("layer 1",)))
    add(Case("predict-arch-empty", ["predict", "--lut", LUT, "-a", ""], None, None, ("0 choices",)))

    # ingest (21, 22) and the store (9).
    ing = ["ingest", "-d", "iphonex", "--bundle", "b1"]
    # seeded: os.urandom started with "{" or "[" about once in 128 runs, and was then (rightly) read as cut-off JSON
    add(Case("ingest-random-bytes", [*ing, "r.log"], write("r.log", random.Random(21).randbytes(4096)), 21,
             ("found no result",)))
    add(Case("ingest-empty-file", [*ing, "e.log"], write("e.log", ""), 21, ("found no result",)))
    add(Case("ingest-json-array", [*ing, "a.json"], write("a.json", "[1, 2, 3]\n"), 21, ("found no result",)))
    add(Case("ingest-average-1e308", [*ing, "r.json"], bundle_results(lambda bid: results_doc(bid, 1e308)), 22,
             ("600000 ms",)))
    add(Case("ingest-nan-average", [*ing, "r.json"], bundle_results(
        lambda bid: json.dumps(results_doc(bid, 640.0)).replace("640.0", "NaN")), None, ("r.json",)))
    add(Case("ingest-negative-min", [*ing, "r.json"], bundle_results(
        lambda bid: {**results_doc(bid, 640.0), "results": [{**results_doc(bid, 640.0)["results"][0], "min": -1}]}),
        None, ("r.json",)))
    add(Case("ingest-other-bundle", [*ing, "r.json"], bundle_results(lambda bid: results_doc("0" * 16, 640.0)),
             None, ("bundle",)))
    add(Case("ingest-named-pipe", [*ing, "p.log"], fifo("p.log"), None, ("not a regular file",)))
    add(Case("ingest-device-node", [*ing, "zero"], device_node("zero", 5), None, ("not a regular file",)))
    add(Case("ingest-directory", [*ing, "b1"], None, None, ("b1",)))
    add(Case("ingest-into-immutable-store", [*ing, "good.json"], immutable("store.sqlite"), 9, ("read-only",),
             teardown=mutable("store.sqlite")))
    add(Case("store-random-bytes", [*ing, "good.json", "--store", "junk.sqlite"], write("junk.sqlite",
             os.urandom(8192)), None, ("junk.sqlite",)))
    add(Case("store-other-schema", [*ing, "good.json", "--store", "v9.sqlite"], _future_store, None,
             ("schema version 9",)))
    add(Case("ingest-android-device", ["ingest", "-d", "pixel", "good.json"], None, None, ("android device",)))
    for x in c:
        x.slow = "--module" in x.args or "--onnx" in x.args
    return c


MODELS = '''import torch
class Weird(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c = torch.nn.Conv2d(3, 8, 3)
    def forward(self, x):
        y = self.c(x)
        return y if y.sum() > 0 else -y
def weird():
    return Weird()
def conv():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())
def upsample():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Upsample(scale_factor=2.5, mode="bicubic"))
'''


def _duplicate_entry(text: str) -> str:
    doc = json.loads(text)
    key, entry = next(iter(doc["entries"].items()))
    body = json.dumps(doc["entries"])
    dup = json.dumps({key: {**entry, "median": entry["median"] * 2}})[1:-1]
    return json.dumps({k: v for k, v in doc.items() if k != "entries"})[:-1] + f', "entries": {{{dup}, {body[1:]}}}'


def _all_entries(ms: float) -> Callable[[str], str]:
    def fn(text: str) -> str:
        doc = json.loads(text)
        for e in doc["entries"].values():
            e.update({f: ms for f in ("median", "p10", "p25", "p75", "p90", "mean", "min", "max")})
        return json.dumps(doc)
    return fn


def _broken_onnx(w: Path) -> None:
    """A Conv fed a weight no initializer, input or node defines."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])
    node = helper.make_node("Conv", ["x", "undefined_w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]))
    onnx.save(model, str(w / "u.onnx"))


def _future_store(w: Path) -> None:
    import sqlite3

    with contextlib.closing(sqlite3.connect(w / "v9.sqlite")) as db:
        db.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('schema_version', '9')")
        db.commit()


# ---- running ------------------------------------------------------------------------------------------------
def run_case(case: Case, world: Path, cache: Path, root: Path, timeout: float = TIMEOUT) -> Outcome:
    d = Path(tempfile.mkdtemp(prefix="case-", dir=root)) / "w"
    shutil.copytree(world, d, symlinks=True)
    try:
        if case.setup:
            case.setup(d)
        before = snapshot(d)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "latency_lut", *case.args], cwd=d, text=True,
                                  env=cli_env(d, cache, case.env), capture_output=True, stdin=subprocess.DEVNULL,
                                  timeout=max(timeout, SLOW_TIMEOUT) if case.slow else timeout)
        except subprocess.TimeoutExpired:
            return Outcome(case, False, time.perf_counter() - t0, "still running at the time limit (a hang)")
        secs = time.perf_counter() - t0
        err = proc.stderr.strip()
        why = _judge(case, proc.returncode, err, d)
        if not why:
            after = snapshot(d)
            changed = sorted(k for k in before.keys() | after.keys()
                             if before.get(k) != after.get(k) and not k.startswith(case.may_change or ("\0",)))
            if changed:
                why = f"changed files outside its outputs: {', '.join(changed[:4])}"
        return Outcome(case, not why, secs, why, err)
    finally:
        if case.teardown:
            case.teardown(d)
        shutil.rmtree(d.parent, ignore_errors=True)


def _judge(case: Case, rc: int, err: str, world: Path) -> str:
    if case.expect == "ok":
        if rc != 0:
            return f"exit {rc}: {err[-300:]}"
        return (case.check(world) if case.check else None) or ""
    lines = err.splitlines()
    if rc != 2:
        return f"exit {rc}, not 2: {err[-300:]}"
    if "Traceback" in err or len(lines) != 1 or not err.startswith("Error: "):
        return f"not one 'Error:' line ({len(lines)} lines): {err[:300]}"
    if len(err) > 500:
        return f"error line of {len(err)} characters"
    missing = [f for f in case.fragments if f not in err]
    return f"error lacks {missing}: {err}" if missing else ""


@contextlib.contextmanager
def prepared(root: Path | None = None) -> Iterator[tuple[Path, Path, Path]]:
    """(world, cache, scratch root): the world is built once and copied for every case."""
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        base = Path(root) if root else Path(tmp)
        cache = Path(os.environ.get("FBNET_LUT_CACHE") or base / "cache")
        yield make_world(base, cache), cache, base


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", default="", help="only cases whose name contains this")
    ap.add_argument("--jobs", type=int, default=2, help="cases run at once")
    ap.add_argument("--timeout", type=float, default=TIMEOUT)
    args = ap.parse_args(argv)
    chosen = [c for c in cases() if args.k in c.name]
    t0 = time.perf_counter()
    with prepared() as (world, cache, root):
        setup_s = time.perf_counter() - t0
        with ThreadPoolExecutor(args.jobs) as pool:
            outcomes = list(pool.map(lambda c: run_case(c, world, cache, root, args.timeout), chosen))
    width = max(len(o.case.name) for o in outcomes)
    for o in outcomes:
        tag = f"#{o.case.issue}" if o.case.issue else ""
        print(f"{'ok ' if o.ok else 'FAIL'} {o.case.name:<{width}} {tag:>4} {o.seconds:5.1f}s  "
              f"{o.why or o.stderr[:100]}")
    failed = [o for o in outcomes if not o.ok]
    numbered = sorted({o.case.issue for o in outcomes if o.case.issue})
    print(f"\n{len(outcomes)} cases ({len([o for o in outcomes if o.case.issue])} reproduce numbered cases "
          f"{', '.join(map(str, numbered))} of issue 13): {len(outcomes) - len(failed)} passed, {len(failed)} failed; "
          f"slowest {max(o.seconds for o in outcomes):.1f} s; world set up in {setup_s:.0f} s")
    print(f"reproduce: python tests/hostile_inputs.py{' -k ' + args.k if args.k else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
