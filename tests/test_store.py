import sqlite3

import pytest

from latency_lut.errors import StoreError
from latency_lut.measure import GatedResult, RunResult
from latency_lut.store import Config, Store


def _cfg(threads=1, fp="host|cpu|x86_64"):
    return Config("local", fp, "onnxruntime", {"runtime_version": "1.0", "threads": threads})


def test_every_attempt_is_kept_and_the_best_is_accepted(tmp_path):
    with Store(tmp_path / "s.sqlite") as st:
        sid = st.start_session(_cfg(), {"cpu_model": "x"}, "0.1")
        res = GatedResult([RunResult([1.0, 2.0, 3.0]), RunResult([1.0, 1.0, 1.1])], best_index=1, flagged=False)
        st.add(sid, "k1", res)
        assert st.completed_keys(_cfg()) == {"k1"}
        rec = st.records(_cfg())["k1"]
        assert rec.stats.median == 1.0 and rec.attempts == 2 and not rec.flagged
        assert st.samples(_cfg(), "k1") == [[1.0, 2.0, 3.0], [1.0, 1.0, 1.1]]
        assert st.session_env(_cfg()) == {"cpu_model": "x"}
        df = st.to_dataframe()
        assert list(df["accepted"]) == [False, True]


def test_configurations_are_kept_apart(tmp_path):
    with Store(tmp_path / "s.sqlite") as st:
        st.add(st.start_session(_cfg(), {}, "0.1"), "k", GatedResult([RunResult([1.0] * 3)], 0, False))
        assert st.completed_keys(_cfg(threads=2)) == set()
        assert st.completed_keys(_cfg(fp="other|cpu|x86_64")) == set()
        assert st.completed_keys(_cfg()) == {"k"}


def test_store_persists_across_connections(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as st:
        st.add(st.start_session(_cfg(), {}, "0.1"), "k", GatedResult([RunResult([2.0] * 3)], 0, True))
    with Store(path) as st:
        assert st.records(_cfg())["k"].flagged


def test_corrupt_store_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="bad.sqlite"):
        Store(bad)


def test_foreign_schema_version_is_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value='99' WHERE name='schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Store(path)
