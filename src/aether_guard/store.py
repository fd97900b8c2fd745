"""Guard's database: one SQLite file in WAL mode.

A baseline is written in one transaction that also switches the "current
baseline" pointer and drops the previous one, so a cancel or a crash (even
``kill -9``) mid-baseline leaves the previous baseline in force and the file
consistent: SQLite's journal rolls the partial transaction back on the next
open. Rows are streamed in (``executemany`` over batches), never collected.

Each operation opens its own connection (connections are not shared between
threads); writers serialise on :attr:`Store.write_lock` so a long baseline
makes a concurrent accept wait instead of failing with SQLITE_BUSY.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

from .scan import Entry
from .schema import BaselineInfo, ReportInfo, VaultEntry


def _null(value: None) -> None:
    return None


# CPython's sqlite3 binds int, float, str and bytearray directly but sends every
# other value (bytes, None) through its adapter lookup, which, finding no
# adapter, looks up ``__adapt__`` on a type and formats and discards an
# AttributeError: a quarter of the CPU time of a baseline's inserts (measured:
# 0.65-0.82 s -> 0.46-0.65 s per 100,000 entries, four such values each). An
# identity adapter for each is found at the first lookup and binds the same value.
sqlite3.register_adapter(bytes, bytes)
sqlite3.register_adapter(type(None), _null)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS baselines(
    id INTEGER PRIMARY KEY, created REAL NOT NULL, files INTEGER NOT NULL,
    bytes INTEGER NOT NULL, problems INTEGER NOT NULL, caller_uid INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS entries(
    baseline_id INTEGER NOT NULL, path BLOB NOT NULL, type TEXT NOT NULL,
    size INTEGER, mode INTEGER, uid INTEGER, gid INTEGER, mtime INTEGER, ctime INTEGER,
    inode INTEGER, target BLOB, sha256 TEXT, blake2b TEXT, problem TEXT,
    PRIMARY KEY (baseline_id, path)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reports(
    id INTEGER PRIMARY KEY, created REAL NOT NULL, baseline_id INTEGER NOT NULL,
    trigger TEXT NOT NULL, caller_uid INTEGER NOT NULL, files_checked INTEGER NOT NULL,
    added INTEGER NOT NULL, removed INTEGER NOT NULL, changed INTEGER NOT NULL,
    problems INTEGER NOT NULL, elapsed_s REAL NOT NULL, accepted INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS findings(
    report_id INTEGER NOT NULL, path BLOB NOT NULL, kind TEXT NOT NULL, type TEXT NOT NULL,
    changes BLOB, problem TEXT, new_entry BLOB, accepted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (report_id, path)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vault(
    id INTEGER PRIMARY KEY, path BLOB NOT NULL, stored TEXT NOT NULL, size INTEGER NOT NULL,
    mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL,
    atime_ns INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL,
    quarantined_at REAL NOT NULL, caller_uid INTEGER NOT NULL, restored_at REAL);
"""
ENTRY_COLUMNS = ("path, type, size, mode, uid, gid, mtime, ctime, inode, target, sha256, "
                 "blake2b, problem")
REPORT_COLUMNS = ("id, created, baseline_id, trigger, caller_uid, files_checked, added, "
                  "removed, changed, problems, elapsed_s, accepted")
VAULT_COLUMNS = ("id, path, size, mode, uid, gid, atime_ns, mtime_ns, sha256, quarantined_at, "
                 "caller_uid, restored_at")


def wire_path(path: bytes) -> str:
    """A path for the wire: valid UTF-8 as is, other bytes as ``\\xNN``."""
    return path.decode("utf-8", "backslashreplace")


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.write_lock = threading.Lock()
        with self.session() as conn:  # (a sqlite3 connection's own `with` does not close it)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=OFF")
        return conn

    @contextmanager
    def session(self) -> Iterator[sqlite3.Connection]:
        conn = self.connect()
        try:
            yield conn
        finally:
            conn.close()

    def checkpoint(self) -> None:
        """Fold the WAL into the database file (at shutdown)."""
        with self.session() as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- baselines ----------------------------------------------------------------
    @staticmethod
    def current_baseline_id(conn: sqlite3.Connection) -> int | None:
        row = conn.execute("SELECT value FROM meta WHERE key='baseline'").fetchone()
        return int(row[0]) if row else None

    def baseline_info(self, conn: sqlite3.Connection) -> BaselineInfo | None:
        bid = self.current_baseline_id(conn)
        if bid is None:
            return None
        row = conn.execute("SELECT id, created, files, bytes, problems, caller_uid "
                           "FROM baselines WHERE id=?", (bid,)).fetchone()
        if row is None:
            return None
        return BaselineInfo(baseline_id=row[0], created=row[1],
                            age_s=round(time.time() - row[1], 3), files=row[2], bytes=row[3],
                            problems=row[4], caller_uid=row[5])

    def write_baseline(self, conn: sqlite3.Connection, batches: Iterable[list[Entry]],
                       caller_uid: int) -> BaselineInfo:
        """Record the entries of ``batches`` as the new current baseline, atomically.

        If iterating ``batches`` raises (cancel), nothing is kept.
        """
        files = total = problems = 0
        with self.write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                old = self.current_baseline_id(conn)
                cur = conn.execute(
                    "INSERT INTO baselines(created, files, bytes, problems, caller_uid) "
                    "VALUES (?, 0, 0, 0, ?)", (time.time(), caller_uid))
                bid = cur.lastrowid
                assert isinstance(bid, int)
                # The id is a literal so the scanner's entries bind as they are,
                # with no row tuple built per entry.
                sql = (f"INSERT OR REPLACE INTO entries(baseline_id, {ENTRY_COLUMNS}) "
                       f"VALUES ({bid:d}, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
                for batch in batches:
                    conn.executemany(sql, batch)
                    files += len(batch)
                    for entry in batch:
                        if entry.problem is not None:
                            problems += 1
                        if entry.sha256 is not None or entry.blake2b is not None:
                            total += entry.size or 0
                created = time.time()
                conn.execute("UPDATE baselines SET created=?, files=?, bytes=?, problems=? "
                             "WHERE id=?", (created, files, total, problems, bid))
                conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('baseline', ?)",
                             (bid,))
                if old is not None:
                    conn.execute("DELETE FROM entries WHERE baseline_id=?", (old,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return BaselineInfo(baseline_id=bid, created=created, age_s=0.0, files=files,
                            bytes=total, problems=problems, caller_uid=caller_uid)

    # -- reports --------------------------------------------------------------------
    @staticmethod
    def _report(row: tuple[object, ...]) -> ReportInfo:
        names = [c.strip() for c in REPORT_COLUMNS.split(",")]
        data = dict(zip(names, row, strict=True))
        data["report_id"] = data.pop("id")
        return msgspec.convert(data, ReportInfo)

    def report_info(self, conn: sqlite3.Connection, report_id: int) -> ReportInfo | None:
        if report_id == 0:
            row = conn.execute(f"SELECT {REPORT_COLUMNS} FROM reports ORDER BY id DESC LIMIT 1"
                               ).fetchone()
        else:
            row = conn.execute(f"SELECT {REPORT_COLUMNS} FROM reports WHERE id=?",
                               (report_id,)).fetchone()
        return self._report(row) if row else None

    def reports(self, conn: sqlite3.Connection, offset: int, limit: int
                ) -> tuple[list[ReportInfo], int]:
        rows = conn.execute(f"SELECT {REPORT_COLUMNS} FROM reports ORDER BY id DESC "
                            "LIMIT ? OFFSET ?", (limit, offset)).fetchall()
        total = conn.execute("SELECT count(*) FROM reports").fetchone()[0]
        return [self._report(r) for r in rows], total

    # -- vault --------------------------------------------------------------------------
    @staticmethod
    def vault_entry(row: tuple[object, ...]) -> VaultEntry:
        names = [c.strip() for c in VAULT_COLUMNS.split(",")]
        data = dict(zip(names, row, strict=True))
        data["entry_id"] = data.pop("id")
        assert isinstance(data["path"], bytes)
        data["path"] = wire_path(data["path"])
        return msgspec.convert(data, VaultEntry)

    def vault_list(self, conn: sqlite3.Connection, include_restored: bool) -> list[VaultEntry]:
        where = "" if include_restored else "WHERE restored_at IS NULL"
        rows = conn.execute(f"SELECT {VAULT_COLUMNS} FROM vault {where} ORDER BY id").fetchall()
        return [self.vault_entry(r) for r in rows]
