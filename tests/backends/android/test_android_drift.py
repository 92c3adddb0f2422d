"""The drift guard on a phone: a temperature rise the thermal guard lets through still re-takes the ops."""
# ruff: noqa: F811  (pytest fixtures imported from android_fixtures are test arguments of the same name)

from __future__ import annotations

from android_fixtures import QUICK, make_backend, phone, phone_home, tiny_models  # noqa: F401

from latency_lut.build import build_lut, config_for
from latency_lut.devices import get_device
from latency_lut.drift import DriftGuard
from latency_lut.spaces import get_space
from latency_lut.store import Store

COOL = {"cpu-big": 38.0, "cpu-little": 36.5, "battery": 30.0}
WARM = {"cpu-big": 44.0, "cpu-little": 40.0, "battery": 30.0}  # below the descriptor's 45 C cooldown limit


def test_a_temperature_rise_retakes_the_ops_since_the_last_check(phone, make_backend, tiny_models, tmp_path):
    specs = list(tiny_models)
    backend = make_backend()
    runs: list[str] = []

    def heat_after_the_first_op(command: str) -> None:
        if "--graph=" in command and ".no-such-model" not in command:
            runs.append(command)
            # Runs: the baseline check, op 1 (the phone warms by 6 C meanwhile), the check after it (which reads
            # the warm phone; it cools down meanwhile), ...
            if len(runs) == 2:
                phone.set_temperatures(WARM)
            elif len(runs) == 3:
                phone.set_temperatures(COOL)
        return None

    phone.shell_hook = heat_after_the_first_op

    guard = DriftGuard(every=1, threshold=5.0, min_threshold=5.0, temp_rise_c=5.0, wait_seconds=0.05,
                       max_wait_seconds=0.5)
    with Store(tmp_path / "s.sqlite") as st:
        res = build_lut(get_space("fbnet", 32, 0.25), get_device("local"), backend, st, QUICK, specs=specs,
                        rounds=1, guard=guard)
        checks = st.drift_checks(config_for(get_device("local"), backend, QUICK))
    assert [c["drifted"] for c in checks[:3]] == [False, True, False]
    assert "temperature +6.0 C" in checks[1]["reason"] and checks[1]["temperature_c"] == 44.0
    assert res.drift == {"checks": len(checks), "drifts": 1, "remeasured": 1, "rebased": 0}
    first_op = runs[1].split("--graph=")[1].split()[0]
    assert sum(first_op in r for r in runs) >= 2  # measured again after the drift
    assert len(res.lut) == 3 and res.lut.header["drift_guard"]["remeasured"] == 1
    assert runs[0] == runs[2]  # both checks run the reference op's model
