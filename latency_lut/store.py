"""The measurement store: one SQLite file holding every raw sample ever taken.

Rows are grouped by *configuration*: the device (its fingerprint, so two machines both called "local" stay apart),
the runtime, and a hash of the settings (runtime version, threads, dtype, exporter, protocol). A build skips the
keys that already have an accepted measurement for its configuration, which is what makes builds resumable: each
op is committed in its own transaction as soon as it is measured, so a kill loses at most the op in flight.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latency_lut.errors import StoreError
from latency_lut.measure import GatedResult, Stats

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    runtime TEXT NOT NULL,
    settings_hash TEXT NOT NULL,
    settings TEXT NOT NULL,
    env TEXT NOT NULL,
    tool_version TEXT NOT NULL,
    started REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    key TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    accepted INTEGER NOT NULL,
    flagged INTEGER NOT NULL,
    samples TEXT NOT NULL,
    stats TEXT NOT NULL,
    extra TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS measurements_key ON measurements(key, accepted);
CREATE INDEX IF NOT EXISTS sessions_config ON sessions(fingerprint, runtime, settings_hash);
"""


def settings_hash(settings: dict[str, Any]) -> str:
    blob = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Config:
    """Which measurements belong together: same device, runtime and settings."""

    device: str
    fingerprint: str
    runtime: str
    settings: dict[str, Any]

    @property
    def hash(self) -> str:
        return settings_hash(self.settings)


@dataclass(frozen=True)
class Record:
    """The accepted measurement of one key."""

    key: str
    stats: Stats
    flagged: bool
    attempts: int
    extra: dict[str, Any]
    created: float
    samples_ms: list[float] | None = None  # raw samples, when read with them (round_records)


class Store:
    """An SQLite measurement store. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                self._db.commit()
            elif int(row[0]) != SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.path} has schema version {row[0]}, this tool reads {SCHEMA_VERSION}; "
                    "use a new --store file"
                )
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot open measurement store {self.path}: {e}; pass another --store file") from e
        except OSError as e:
            raise StoreError(f"cannot create measurement store {self.path}: {e.strerror}") from e

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    # ---- writing -------------------------------------------------------------------------------------------
    def start_session(self, config: Config, env: dict[str, Any], tool_version: str) -> int:
        with self._db:
            cur = self._db.execute(
                "INSERT INTO sessions (device, fingerprint, runtime, settings_hash, settings, env, tool_version,"
                " started) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (config.device, config.fingerprint, config.runtime, config.hash,
                 json.dumps(config.settings, sort_keys=True, default=str), json.dumps(env, default=str),
                 tool_version, time.time()),
            )
        return int(cur.lastrowid)

    def add(self, session_id: int, key: str, result: GatedResult, round_no: int | None = None) -> list[int]:
        """Store every attempt of one op in one transaction; the best attempt is marked accepted.

        ``round_no`` (a build's or a validation's interleaved round) goes into each row's extra. Returns the row ids.
        """
        now = time.time()
        rows = []
        for i, att in enumerate(result.attempts):
            st = att.summary()
            extra = att.extra if round_no is None else {**att.extra, "round": int(round_no)}
            rows.append((
                session_id, key, i, int(i == result.best_index), int(result.flagged),
                json.dumps([round(x, 6) for x in att.samples_ms]), json.dumps(st.to_dict()),
                json.dumps(extra, default=str), now,
            ))
        try:
            with self._db:
                ids = []
                for row in rows:
                    cur = self._db.execute(
                        "INSERT INTO measurements (session_id, key, attempt, accepted, flagged, samples, stats, "
                        "extra, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
                    ids.append(int(cur.lastrowid))
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot write to measurement store {self.path}: {e}") from e
        return ids

    def add_check(self, session_id: int, key: str, result: Any, check: dict[str, Any]) -> None:
        """A drift guard's re-timing of its reference op: kept (as not accepted, so no LUT entry uses it)."""
        att = GatedResult([result], 0, False)
        ids = self.add(session_id, key, att)
        with self._db:
            self._db.execute("UPDATE measurements SET accepted = 0, extra = ? WHERE id = ?",
                             (json.dumps({**result.extra, "drift_check": check}, default=str), ids[0]))

    def reject(self, ids: Iterable[int], reason: str) -> None:
        """Un-accept measurements (timed while the machine drifted); they stay in the store with the reason."""
        ids = list(ids)
        if not ids:
            return
        with self._db:
            for i in ids:
                row = self._db.execute("SELECT extra FROM measurements WHERE id = ?", (i,)).fetchone()
                extra = {**json.loads(row[0]), "rejected": reason} if row else {"rejected": reason}
                self._db.execute("UPDATE measurements SET accepted = 0, extra = ? WHERE id = ?",
                                 (json.dumps(extra, default=str), i))

    # ---- reading -------------------------------------------------------------------------------------------
    def _config_where(self, config: Config) -> tuple[str, tuple[Any, ...]]:
        return ("s.fingerprint = ? AND s.runtime = ? AND s.settings_hash = ?",
                (config.fingerprint, config.runtime, config.hash))

    def completed_keys(self, config: Config) -> set[str]:
        where, args = self._config_where(config)
        rows = self._db.execute(
            f"SELECT DISTINCT m.key FROM measurements m JOIN sessions s ON m.session_id = s.id "
            f"WHERE m.accepted = 1 AND {where}", args,
        ).fetchall()
        return {r[0] for r in rows}

    def records(self, config: Config, keys: Iterable[str] | None = None) -> dict[str, Record]:
        """The latest accepted measurement of each key for a configuration (of whichever round)."""
        return {k: max(by_round.values(), key=lambda r: r.created)
                for k, by_round in self.round_records(config, keys).items()}

    def round_records(self, config: Config, keys: Iterable[str] | None = None) -> dict[str, dict[int, Record]]:
        """The latest accepted measurement of each (key, round) of a configuration; rows without a round (taken
        before builds had rounds, or imported) are round 0."""
        where, args = self._config_where(config)
        rows = self._db.execute(
            f"SELECT m.key, m.stats, m.flagged, m.extra, m.created, m.samples, "
            f"(SELECT COUNT(*) FROM measurements a WHERE a.session_id = m.session_id AND a.key = m.key) "
            f"FROM measurements m JOIN sessions s ON m.session_id = s.id "
            f"WHERE m.accepted = 1 AND {where} ORDER BY m.created, m.id", args,
        ).fetchall()
        wanted = set(keys) if keys is not None else None
        out: dict[str, dict[int, Record]] = {}
        for key, stats, flagged, extra, created, samples, n in rows:
            if wanted is None or key in wanted:
                ex = json.loads(extra)
                rec = Record(key, Stats.from_dict(json.loads(stats)), bool(flagged), int(n), ex, float(created),
                             json.loads(samples))
                out.setdefault(key, {})[int(ex.get("round", 0))] = rec
        return out

    def drift_checks(self, config: Config) -> list[dict[str, Any]]:
        """Every drift-guard check recorded for a configuration, oldest first."""
        where, args = self._config_where(config)
        rows = self._db.execute(
            f"SELECT m.extra FROM measurements m JOIN sessions s ON m.session_id = s.id "
            f"WHERE m.accepted = 0 AND {where} ORDER BY m.created, m.id", args,
        ).fetchall()
        return [d["drift_check"] for (e,) in rows if "drift_check" in (d := json.loads(e))]

    def rejected_count(self, config: Config) -> int:
        """Measurements a drift guard rejected (and had re-taken) for a configuration."""
        where, args = self._config_where(config)
        rows = self._db.execute(
            f"SELECT m.extra FROM measurements m JOIN sessions s ON m.session_id = s.id "
            f"WHERE m.accepted = 0 AND {where}", args,
        ).fetchall()
        return sum("rejected" in json.loads(e) for (e,) in rows)

    def extras(self, config: Config) -> list[tuple[str, dict[str, Any]]]:
        """``(key, extra)`` of every accepted measurement of a configuration, oldest first.

        Imports (results measured elsewhere, such as a phone's) use it to recognise what they already stored.
        """
        where, args = self._config_where(config)
        rows = self._db.execute(
            f"SELECT m.key, m.extra FROM measurements m JOIN sessions s ON m.session_id = s.id "
            f"WHERE m.accepted = 1 AND {where} ORDER BY m.created, m.id", args,
        ).fetchall()
        return [(key, json.loads(extra)) for key, extra in rows]

    def samples(self, config: Config, key: str) -> list[list[float]]:
        """Raw samples of every attempt at ``key`` under ``config``, oldest first."""
        where, args = self._config_where(config)
        rows = self._db.execute(
            f"SELECT m.samples FROM measurements m JOIN sessions s ON m.session_id = s.id "
            f"WHERE m.key = ? AND {where} ORDER BY m.created, m.attempt", (key, *args),
        ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def session_env(self, config: Config) -> dict[str, Any]:
        """Environment recorded by the latest session of a configuration (empty if none)."""
        where, args = self._config_where(config)
        row = self._db.execute(
            f"SELECT s.env FROM sessions s WHERE {where} ORDER BY s.id DESC LIMIT 1", args
        ).fetchone()
        return json.loads(row[0]) if row else {}

    def to_dataframe(self):  # -> pandas.DataFrame
        """Every measurement attempt with its configuration, one row per attempt."""
        import pandas as pd

        q = (
            "SELECT s.device, s.fingerprint, s.runtime, s.settings_hash, m.key, m.attempt, m.accepted, m.flagged,"
            " m.stats, m.created FROM measurements m JOIN sessions s ON m.session_id = s.id ORDER BY m.id"
        )
        rows = []
        for dev, fp, rt, sh, key, att, acc, fl, stats, created in self._db.execute(q):
            rows.append({"device": dev, "fingerprint": fp, "runtime": rt, "settings_hash": sh, "key": key,
                         "attempt": att, "accepted": bool(acc), "flagged": bool(fl), **json.loads(stats),
                         "created": created})
        return pd.DataFrame(rows)
