"""A small build against each real runtime, through the same code path as `fbnet-lut build`."""

import pytest

from latency_lut.backends import backend_class, create_backend
from latency_lut.build import build_lut, config_for
from latency_lut.devices import get_device
from latency_lut.errors import DeviceError
from latency_lut.measure import Protocol
from latency_lut.spaces import get_space
from latency_lut.store import Store

FAST = Protocol(warmup=1, runs=5, min_seconds=0, retries=0)


@pytest.fixture(scope="module")
def small():
    space = get_space("fbnet", 32, 0.25)
    specs = space.unique_specs()
    picked = [specs[0], specs[2], next(s for s in specs if s.kind == "skip"), specs[-2], specs[-1]]
    return space, picked


@pytest.mark.parametrize("runtime", ["onnxruntime", "litert", "torch"])
def test_small_build_on_each_runtime(runtime, small, tmp_path, artifact_cache):
    space, specs = small
    dev = get_device("local")
    backend = create_backend(dev, runtime)
    with Store(tmp_path / "s.sqlite") as store:
        res = build_lut(space, dev, backend, store, FAST, specs=specs, guard=None,  # the guard: tests/test_build.py
                        extra_rounds=0)  # extra rounds: tests/test_build.py
        assert res.measured == len(specs) and res.reused == 0
        assert set(res.lut.entries) == {s.key for s in specs}
        for e in res.lut.entries.values():
            assert e.stats.count >= FAST.runs and 0 < e.stats.min <= e.stats.median <= e.stats.max
        cfg = config_for(dev, backend, FAST)
        key = specs[0].key
        raw = store.samples(cfg, key)  # one row per round, pooled into the entry's statistics
        assert len(raw) == res.rounds == 3 and sum(map(len, raw)) == res.lut[key].stats.count
        h = res.lut.header
        assert h["runtime"] == runtime and h["threads"] == 1 and h["runtime_version"]
        assert h["device_info"]["cpu_model"] and not h["complete"]
        again = build_lut(space, dev, backend, store, FAST, specs=specs, extra_rounds=0)  # the same build again
        assert again.measured == 0 and again.reused == len(specs)


def test_settings_separate_configurations(small, tmp_path, artifact_cache):
    space, specs = small
    dev = get_device("local")
    with Store(tmp_path / "s.sqlite") as store:
        build_lut(space, dev, create_backend(dev, "onnxruntime"), store, FAST, specs=specs[:1])
        two = build_lut(space, dev, create_backend(dev, "onnxruntime", threads=2), store, FAST, specs=specs[:1])
        assert two.measured == 1


def test_unknown_runtime_is_a_device_error():
    with pytest.raises(DeviceError, match="runtime 'tensorrt' is not available on local devices"):
        backend_class("local", "tensorrt")


def test_onnxruntime_times_a_unit_over_copies_of_its_weights_and_a_network_in_one_session(small, artifact_cache):
    """A unit's weights come cold, as inside a network: its timed calls rotate over COLD_COPIES sessions (one
    arena shared for activations); a whole network is timed as deployed, in one session."""
    from latency_lut.backends.local_onnxruntime import COLD_COPIES, OnnxRuntimeBackend
    from latency_lut.export import export_spec
    from latency_lut.networks import NetworkSpec, export_networks

    class Counting(OnnxRuntimeBackend):
        def session(self, path, shared_arena=False):
            sess = super().session(path, shared_arena)
            calls = self.calls.setdefault(id(sess), [shared_arena, 0])

            class Wrapped:
                def get_inputs(self):
                    return sess.get_inputs()

                def run(self, *a):
                    calls[1] += 1
                    return sess.run(*a)

            return Wrapped()

    space, specs = small
    unit = specs[0]
    for weights, copies in (("cold", COLD_COPIES), ("hot", 1)):
        b = Counting(weights=weights)
        b.calls = {}
        res = b.measure(unit, export_spec(unit, "onnx"), FAST)
        assert len(b.calls) == copies and all(shared == (copies > 1) for shared, _ in b.calls.values())
        n = [k for _, k in b.calls.values()]  # round robin: each copy called once untimed, then in turn
        assert sum(n) == (copies > 1) * copies + FAST.warmup + len(res.samples_ms) and max(n) - min(n) <= 1
        assert res.extra.get("weight_copies", 1) == copies
    net = NetworkSpec(space, space.parse_arch("fbnet_c"))
    b = Counting()
    b.calls = {}
    b.measure(net, export_networks([net], "onnx")[net.key], FAST)
    assert len(b.calls) == 1
    dev = get_device("local")
    cold, hot = OnnxRuntimeBackend(), OnnxRuntimeBackend(weights="hot")
    assert cold.settings()["weights"] == "cold" and "weights" not in hot.settings()  # old LUTs keep their hash
    assert config_for(dev, cold, FAST).hash != config_for(dev, hot, FAST).hash
    with pytest.raises(ValueError, match="'cold' or 'hot'"):
        OnnxRuntimeBackend(weights="lukewarm")


def test_cold_copies_pass_the_cold_footprint_within_bounds(tmp_path):
    from latency_lut.backends.base import MAX_COLD_COPIES, cold_copies
    from latency_lut.models import ModelUnit

    art = tmp_path / "m.onnx"
    hot, cold = ModelUnit("m", (1, 3, 8, 8)), ModelUnit("m", (1, 3, 8, 8), weights="cold")
    for size, want in ((10 * 2**20, 7), (40 * 2**20, 2), (100 * 2**20, 2), (1000, MAX_COLD_COPIES)):
        with open(art, "wb") as f:
            f.truncate(size)
        assert cold_copies(cold, art) == want and cold_copies(hot, art) == 1
    with pytest.raises(Exception, match="weights must be one of hot, cold"):
        ModelUnit("m", (1, 3, 8, 8), weights="warm")


@pytest.mark.parametrize("runtime", ["onnxruntime", "litert"])
def test_a_cold_model_is_timed_over_copies_of_itself(runtime, tmp_path, artifact_cache):
    """--weights cold: the timed calls rotate over copies of the whole model (ONNX Runtime: sessions with arenas
    of their own; LiteRT: interpreters), as many as cold_copies says; the same model hot runs in one."""
    import torch

    from latency_lut.backends.base import cold_copies
    from latency_lut.models import ModelUnit, export_units

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 1, 1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, 1, 1))
    hot, cold = ModelUnit("m", (1, 3, 16, 16), module=model), ModelUnit("m", (1, 3, 16, 16), module=model,
                                                                        weights="cold")
    be = create_backend(get_device("local"), runtime)
    arts = export_units([hot, cold], be.artifact_format)
    assert cold.key == hot.key + "-cold" and arts[cold.key] == arts[hot.key]  # one file, two keys
    made = []
    if runtime == "onnxruntime":
        real = be.session
        be.session = lambda path, shared_arena=False: made.append(shared_arena) or real(path, shared_arena)
    else:
        real = be.interpreter
        be.interpreter = lambda path: made.append(False) or real(path)
    res = be.measure(cold, arts[cold.key], FAST)
    k = cold_copies(cold, arts[cold.key])
    assert k > 1 and len(made) == k and not any(made) and res.extra["weight_copies"] == k
    made.clear()
    res = be.measure(hot, arts[hot.key], FAST)
    assert len(made) == 1 and "weight_copies" not in res.extra
    be.close()
