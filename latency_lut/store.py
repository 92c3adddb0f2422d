"""The measurement store: one SQLite file holding every raw sample ever taken.

Rows are grouped by *configuration*: the device (its fingerprint, so two machines both called "local" stay apart),
the runtime, and a hash of the settings (runtime version, threads, dtype, exporter, protocol). A build skips the
keys that already have an accepted measurement for its configuration, which is what makes builds resumable: each
op is committed in its own transaction as soon as it is measured, so a kill loses at most the op in flight.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from latency_lut.errors import OutputPathError, StoreError
from latency_lut.measure import GatedResult, Stats
from latency_lut.outputs import check_store_path

SCHEMA_VERSION = 1
# A claim older than this is taken over even when its process cannot be checked (another host).
CLAIM_SECONDS = 3600.0
_HOST = socket.gethostname()
T = TypeVar("T")

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
CREATE TABLE IF NOT EXISTS claims (
    config TEXT NOT NULL,
    key TEXT NOT NULL,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (config, key)
);
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _fix(e: sqlite3.DatabaseError) -> str:
    msg = str(e).lower()
    if "readonly" in msg or "read-only" in msg:
        return ("the file (or its folder) is read-only or immutable: make it writable, or pass another --store file "
                "(a copy of it keeps its measurements)")
    if "locked" in msg or "busy" in msg:
        return "another process holds it locked; wait for it to finish or pass another --store file"
    return "pass another --store file"


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



def _claim_key(key: str, round_no: int | None) -> str:
    """The claims table's key: an op, or one round of an op."""
    return key if round_no is None else f"{key}#round{round_no}"

class Store:
    """An SQLite measurement store. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            check_store_path(self.path)
        except OutputPathError as e:
            raise StoreError(str(e)) from None
        # A store this process may not write (read-only or immutable) is opened as an immutable file: reads work,
        # SQLite leaves no -wal/-shm beside it, and the first write is a StoreError saying so.
        self.read_only = self.path.exists() and not os.access(self.path, os.W_OK)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.read_only:
                self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?immutable=1", uri=True, timeout=30)
            else:
                self._db = sqlite3.connect(str(self.path), timeout=30)
            # The version is checked before anything is written: a store of another version stays untouched.
            has_meta = self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone()
            row = self._db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone() if has_meta \
                else None
            if row is not None and row[0] != str(SCHEMA_VERSION):
                raise StoreError(
                    f"store {self.path} has schema version {row[0]}, this tool reads {SCHEMA_VERSION}; "
                    "use a new --store file"
                )
            if not self.read_only:
                self._init_schema()
            if row is None:
                with self._writing():
                    self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot open measurement store {self.path}: {e}; {_fix(e)}") from e
        except OSError as e:
            raise StoreError(f"cannot create measurement store {self.path}: {e.strerror}") from e

    def _init_schema(self, wait_s: float = 30.0) -> None:
        # Switching a new file to WAL needs it alone for a moment, and SQLite answers "locked" at once, without its
        # busy wait, when builds started together open a fresh store at the same instant: retry for a while.
        deadline = time.monotonic() + wait_s
        delay = 0.01
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(2 * delay, 0.5)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    # ---- writing -------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A write transaction; a read-only or immutable file, a full disk or a locked store is a StoreError."""
        if self.read_only:
            raise StoreError(f"cannot write to measurement store {self.path}: "
                             f"{_fix(sqlite3.OperationalError('read-only'))}")
        try:
            with self._db:
                yield
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot write to measurement store {self.path}: {e}; {_fix(e)}") from e

    def start_session(self, config: Config, env: dict[str, Any], tool_version: str) -> int:
        with self._writing():
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
        ids = []
        with self._writing():
            for row in rows:
                cur = self._db.execute(
                    "INSERT INTO measurements (session_id, key, attempt, accepted, flagged, samples, stats, extra,"
                    " created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
                ids.append(int(cur.lastrowid))
        return ids

    def add_check(self, session_id: int, key: str, result: Any, check: dict[str, Any]) -> None:
        """A drift guard's re-timing of its reference op: kept (as not accepted, so no LUT entry uses it)."""
        att = GatedResult([result], 0, False)
        ids = self.add(session_id, key, att)
        with self._writing():
            self._db.execute("UPDATE measurements SET accepted = 0, extra = ? WHERE id = ?",
                             (json.dumps({**result.extra, "drift_check": check}, default=str), ids[0]))

    def reject(self, ids: Iterable[int], reason: str) -> None:
        """Un-accept measurements (timed while the machine drifted); they stay in the store with the reason."""
        ids = list(ids)
        if not ids:
            return
        with self._writing():
            for i in ids:
                row = self._db.execute("SELECT extra FROM measurements WHERE id = ?", (i,)).fetchone()
                extra = {**json.loads(row[0]), "rejected": reason} if row else {"rejected": reason}
                self._db.execute("UPDATE measurements SET accepted = 0, extra = ? WHERE id = ?",
                                 (json.dumps(extra, default=str), i))

    # ---- claims: builds sharing one store split the work ----------------------------------------------------
    def claim_each(self, config: Config, items: Iterable[T], key: Callable[[T], str], *, round_no: int | None = None,
                   ttl: float = CLAIM_SECONDS, poll: float = 0.5) -> Iterator[T]:
        """Yield the items whose key this process has claimed for ``config``, one at a time.

        With ``round_no`` the claim is on the key's measurement of that round (a build's interleaved rounds), and
        "done" means that round has an accepted measurement.

        A key another live process has claimed is skipped at first and waited for at the end; a key that got an
        accepted measurement meanwhile is dropped. The caller measures and :meth:`add` each item it receives;
        the claim is released when it asks for the next one (or when the generator is closed, on any exception).
        A claim is stale, and taken over, when its process is gone (same host) or it is older than ``ttl``
        seconds, so a killed build never blocks another; two builds on one store both finish, and each op is
        measured by one of them.
        """
        owner = f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        pending = list(items)
        try:
            while pending:
                busy = []
                for item in pending:
                    state = self._claim(config, key(item), owner, ttl, round_no)
                    if state == "mine":
                        yield item
                        self._release(owner, _claim_key(key(item), round_no))
                    elif state == "busy":
                        busy.append(item)
                pending = busy
                if pending:
                    time.sleep(poll)
        finally:
            self._release(owner)

    def _claim(self, config: Config, key: str, owner: str, ttl: float, round_no: int | None = None) -> str:
        """"done" (an accepted measurement exists), "mine" (claimed now) or "busy" (a live claim of another)."""
        cfg = f"{config.fingerprint}|{config.runtime}|{config.hash}"
        if self._has_accepted(config, key, round_no):
            return "done"
        ck = _claim_key(key, round_no)
        now = time.time()
        with self._writing():
            row = self._db.execute("SELECT owner, host, pid FROM claims WHERE config = ? AND key = ?",
                                   (cfg, ck)).fetchone()
            if row and row[1] == _HOST and not _alive(int(row[2])):
                self._db.execute("DELETE FROM claims WHERE config = ? AND key = ? AND owner = ?", (cfg, ck, row[0]))
            self._db.execute(
                "INSERT INTO claims (config, key, owner, host, pid, expires) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(config, key) DO UPDATE SET owner = excluded.owner, host = excluded.host, "
                "pid = excluded.pid, expires = excluded.expires WHERE claims.expires < ?",
                (cfg, ck, owner, _HOST, os.getpid(), now + ttl, now),
            )
            got = self._db.execute("SELECT owner FROM claims WHERE config = ? AND key = ?", (cfg, ck)).fetchone()
        if not got or got[0] != owner:
            return "busy"
        if self._has_accepted(config, key, round_no):  # finished by another between the check and the claim
            self._release(owner, ck)
            return "done"
        return "mine"

    def _release(self, owner: str, key: str | None = None) -> None:
        with contextlib.suppress(sqlite3.DatabaseError), self._db:
            if key is None:
                self._db.execute("DELETE FROM claims WHERE owner = ?", (owner,))
            else:
                self._db.execute("DELETE FROM claims WHERE owner = ? AND key = ?", (owner, key))

    def _has_accepted(self, config: Config, key: str, round_no: int | None = None) -> bool:
        where, args = self._config_where(config)
        rows = self._db.execute(
            f"SELECT m.extra FROM measurements m JOIN sessions s ON m.session_id = s.id "
            f"WHERE m.key = ? AND m.accepted = 1 AND {where}", (key, *args),
        ).fetchall()
        if round_no is None:
            return bool(rows)
        return any(int(json.loads(e).get("round", 0)) == round_no for (e,) in rows)  # no round = round 0

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
