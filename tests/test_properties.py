"""Property-based tests (hypothesis): every reader of user input either gives a valid object or its own clean error,
never another exception, whatever the input.

Op keys and architecture strings round trip; the LUT loader, descriptor loading, and the iOS and Android results
parsers are fed mutations of valid inputs and random text.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from latency_lut import lut as lutmod
from latency_lut.errors import ArchitectureError, DeviceError, LatencyLutError, LUTFormatError
from latency_lut.measure import MAX_PLAUSIBLE_MS
from latency_lut.ops import ACTS, DTYPES, KINDS, OpSpec
from latency_lut.spaces import get_space
from latency_lut.synthetic import synthetic_lut

# A loaded CI host makes generation slow; that is no failure of the code under test.
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
SPACE = get_space("fbnet", 64, 0.25)

# JSON-like values, including the awkward ones: huge ints, non-finite floats, deep lists.
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(10**20), 10**20),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.sampled_from(["16", "1e308", "conv", "fp32", "", "NaN", "-1"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=8)


# ---- op keys ------------------------------------------------------------------------------------------------
@st.composite
def op_specs(draw: st.DrawFn) -> OpSpec:
    kind = draw(st.sampled_from(KINDS))
    small = st.integers(1, 64)
    fields = dict(kind=kind, cin=draw(small), h=draw(small), w=draw(small), cout=draw(st.sampled_from([0, 8, 16, 24])),
                  kernel=draw(st.sampled_from([1, 3, 5, 7])), stride=draw(st.sampled_from([1, 2])),
                  expansion=draw(st.sampled_from([1, 3, 6, 0.5, 2.5])), groups=draw(st.sampled_from([1, 2])),
                  dtype=draw(st.sampled_from(DTYPES)), act=draw(st.sampled_from(["", *ACTS])),
                  padding=draw(st.sampled_from([-1, 0, 1, 2])), hidden=draw(st.sampled_from([0, 4, 8])))
    if kind == "fc":
        fields.update(h=1, w=1)
    for fix in ({}, {"act": "", "padding": -1}, {"act": "", "padding": -1, "groups": 1,
                                                 "hidden": 8 if kind == "se" else 0}):
        try:  # the drawn fields, else the same op with its kind's defaults (little filtering: a healthy test)
            return OpSpec(**{**fields, **fix})
        except ValueError:
            pass
    assume(False)
    raise AssertionError("unreachable")


@SETTINGS
@given(op_specs())
def test_op_keys_round_trip(spec):
    back = OpSpec.from_key(spec.key)
    assert back.key == spec.key
    # Fields a kind does not use (a conv's expansion) are not in its key: the canonical spec is the key's.
    assert OpSpec.from_key(back.key) == back
    assert {f: getattr(back, f) for f in ("kind", "cin", "dtype", "act")} == \
        {f: getattr(spec, f) for f in ("kind", "cin", "dtype", "act")}


@SETTINGS
@given(st.one_of(st.text(max_size=40), op_specs().map(lambda s: s.key).flatmap(
    lambda k: st.integers(0, len(k)).flatmap(lambda i: st.text(max_size=3).map(lambda t: k[:i] + t + k[i:])))))
def test_any_string_is_a_key_or_a_value_error(text):
    try:
        spec = OpSpec.from_key(text)
    except ValueError:
        return
    assert spec.key == text and OpSpec.from_key(spec.key) == spec


# ---- architecture strings -----------------------------------------------------------------------------------
@SETTINGS
@given(st.lists(st.integers(0, SPACE.num_candidates - 1), min_size=SPACE.num_layers, max_size=SPACE.num_layers),
       st.sampled_from([" ", ",", "|", " , ", "\t"]), st.booleans())
def test_arch_strings_round_trip(choices, sep, by_name):
    tokens = [SPACE.candidates[c] if by_name else str(c) for c in choices]
    arch = SPACE.parse_arch(sep.join(tokens))
    assert list(arch.choices) == choices
    assert SPACE.parse_arch(" ".join(SPACE.choice_names(arch))).choices == arch.choices


@SETTINGS
@given(st.one_of(st.text(max_size=300), st.lists(st.one_of(st.sampled_from(SPACE.candidates), st.text(max_size=6),
                                                           st.integers(-20, 10**12).map(str)),
                                                 min_size=20, max_size=24).map(" ".join)))
def test_any_arch_string_is_an_architecture_or_an_architecture_error(text):
    try:
        arch = SPACE.parse_arch(text)
    except ArchitectureError as e:
        assert len(str(e)) < 600  # quotes what was typed, cut short
        return
    assert len(arch.choices) == SPACE.num_layers
    assert all(0 <= c < SPACE.num_candidates for c in arch.choices)


# ---- the LUT loader -----------------------------------------------------------------------------------------
BASE = synthetic_lut(SPACE).to_dict()
BASE["entries"] = dict(list(BASE["entries"].items())[:4])


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


PATHS = [p for p in _paths(BASE) if p]


@st.composite
def mutated_luts(draw: st.DrawFn) -> str:
    doc = json.loads(json.dumps(BASE))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent = doc
        try:
            for k in path[:-1]:
                parent = parent[k]
            op = draw(st.sampled_from(["set", "delete", "add"]))
            if op == "set" or not isinstance(parent, dict):
                parent[path[-1]] = draw(VALUES)
            elif op == "delete":
                parent.pop(path[-1], None)
            else:
                parent[draw(st.text(max_size=8))] = draw(VALUES)
        except (KeyError, IndexError, TypeError):
            pass
    text = json.dumps(doc, allow_nan=True)
    cut = draw(st.one_of(st.none(), st.integers(0, len(text))))
    if cut is not None:  # a truncated or spliced file
        text = text[:cut] + draw(st.text(max_size=5))
    return text


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("props")


@SETTINGS
@given(mutated_luts())
def test_lut_loader_gives_a_valid_lut_or_a_clean_error(scratch, text):
    path = scratch / "m.json"
    path.write_text(text)
    try:
        lut = lutmod.load(path)
    except LUTFormatError as e:
        assert "m.json" in str(e) and "\n" not in str(e)
        return
    # A LUT that loads is one every consumer can use: plausible numbers, a finite total, strict JSON again.
    total = sum(e.median for e in lut.entries.values())
    assert math.isfinite(total) and all(0 <= e.median <= MAX_PLAUSIBLE_MS for e in lut.entries.values())
    assert lutmod.load(lut.save(scratch / "again.json")).to_dict() == lut.to_dict()


# ---- device descriptors -------------------------------------------------------------------------------------
FIELDS = ["name", "kind", "runtime", "runtimes", "threads", "description", "transport", "serial", "address",
          "cpu_mask", "thermal_zones", "cooldown_celsius", "benchmark_binary", "remote_dir", "reconnect_attempts",
          "connect_timeout_seconds", "product_types", "app_bundle_id", "tflite_version", "delegate", "warmup",
          "runs", "min_seconds", "colour"]
VALID = {"android": {"name": "p", "kind": "android", "runtime": "litert", "transport": "tcp",
                     "address": "127.0.0.1:5037", "cpu_mask": "f0", "benchmark_binary": "/bin/sh"},
         "ios": {"name": "i", "kind": "ios", "runtime": "litert", "product_types": ["iPhone10,3"],
                 "app_bundle_id": "a.b", "tflite_version": "2.16.1"},
         "local": {"name": "l", "kind": "local", "runtime": "onnxruntime"}}


@st.composite
def descriptors(draw: st.DrawFn) -> str:
    doc = dict(VALID[draw(st.sampled_from(sorted(VALID)))])
    for _ in range(draw(st.integers(0, 3))):
        doc[draw(st.sampled_from(FIELDS))] = draw(VALUES)
    if draw(st.booleans()):
        doc.pop(draw(st.sampled_from(sorted(doc))), None)
    text = yaml.safe_dump(doc)
    if draw(st.integers(0, 4)) == 0:  # damaged text
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.text(max_size=6)) + text[i:]
    return text


def _use_descriptor(path: Path) -> None:
    from latency_lut.devices import load_descriptor

    dev = load_descriptor(path)
    if dev.kind == "android":
        from latency_lut.backends.android.config import AndroidConfig

        AndroidConfig.from_options(dev.name, dev.source, dev.threads, dev.options)
    elif dev.kind == "ios":
        from latency_lut.backends.ios.app import IOSApp

        app = IOSApp(dev)
        app.protocol()
        app.settings()


@SETTINGS
@given(st.one_of(descriptors(), st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_descriptor_loading_gives_a_device_or_a_device_error(scratch, text):
    path = scratch / "d.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        _use_descriptor(path)
    except DeviceError as e:
        assert "\n" not in str(e)


@SETTINGS
@given(st.binary(max_size=300))
def test_descriptor_of_random_bytes_is_a_device_error_or_a_device(scratch, data):
    path = scratch / "b.yaml"
    path.write_bytes(data)
    try:
        _use_descriptor(path)
    except DeviceError:
        pass


# ---- iOS and Android results --------------------------------------------------------------------------------
IOS_LOG = """INFO: Benchmark name: [fbnet-lut/0123456789abcdef/ir-in16x16x8-out8-k3-e1-g1-s1]
INFO: Graph: [ir-in16x16x8-out8-k3-e1-g1-s1.tflite]
INFO: Num threads: [1]
INFO: count=10 first=700 curr=640 min=630 max=702 avg=645.5 std=12
INFO: count=50 first=650 curr=641 min=629 max=702 avg=640.1 std=12
INFO: Inference timings in us: Init: 1800, First inference: 700, Warmup (avg): 645.5, Inference (avg): 640.1
"""
IOS_JSON = json.dumps({"format": "fbnet-lut-ios-results", "bundle_id": "0123456789abcdef", "unit": "us",
                       "results": [{"key": "ir-in16x16x8-out8-k3-e1-g1-s1", "count": 50, "avg": 640.1, "std": 12,
                                    "min": 629, "max": 702}]})
ANDROID_OUT = """STARTING!
Num threads: [1]
Graph: [/data/local/tmp/fbnet-lut/models/x.tflite]
count=10 first=700 curr=640 min=630 max=702 avg=645.5 std=12
count=50 first=58154 curr=53809 min=53077 max=60727 avg=55043.2 std=1562
Inference timings in us: Init: 18777, First inference: 64791, Warmup (avg): 57758.2, Inference (avg): 55043.2
"""


def _mutations(text: str) -> st.SearchStrategy[str]:
    def splice(args: tuple[int, int, str]) -> str:
        i, j, t = args
        i, j = sorted((i % (len(text) + 1), j % (len(text) + 1)))
        return text[:i] + t + text[j:]
    return st.tuples(st.integers(0, 10**6), st.integers(0, 10**6),
                     st.one_of(st.text(max_size=10), st.sampled_from(["nan", "inf", "1e308", "-1", "count=", "\n",
                                                                       "=", "(all same)", "us", "ms"]))).map(splice)


@SETTINGS
@given(st.one_of(_mutations(IOS_LOG), _mutations(IOS_JSON), st.text(max_size=300)))
def test_ios_results_parse_or_raise_a_clean_error(text):
    from latency_lut.backends.ios.results import parse_results

    try:
        parsed = parse_results(text, "r.log", None)
    except LatencyLutError as e:
        assert "\n" not in str(e)
        return
    for r in parsed.results:
        assert r.stats.count >= 1


@SETTINGS
@given(st.one_of(_mutations(ANDROID_OUT), st.text(max_size=300)))
def test_android_benchmark_output_parses_or_raises_a_clean_error(text):
    from latency_lut.backends.android.backend import read_output

    try:
        _, stats, _ = read_output(text, True, "k", 0, "p")
    except DeviceError as e:
        assert "\n" not in str(e)
        return
    assert stats.count >= 1 and 0 <= stats.median <= MAX_PLAUSIBLE_MS
