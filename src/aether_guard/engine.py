"""Baseline, check and accept: the scanner's entries against the database."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import msgspec

from aether.service import OperationFailed

from .policy import GuardPolicy, PathRule
from .scan import SPECIAL, Entry, Scanner, Stopped
from .schema import (
    AcceptResult,
    AttributeChange,
    BaselineInfo,
    Change,
    ReportInfo,
    Value,
)
from .store import ENTRY_COLUMNS, Store, wire_path

Progress = Callable[[int, int, str], None]
_changes_encoder = msgspec.msgpack.Encoder()
_changes_decoder = msgspec.msgpack.Decoder(list[AttributeChange])
FIRST = 50
BATCH = 500  # entries per insert, cancel check and progress report


@dataclass
class Counts:
    checked: int = 0
    added: int = 0
    removed: int = 0
    changed: int = 0
    problems: int = 0


def _value(name: str, value: object) -> Value:
    if isinstance(value, bytes):
        return wire_path(value)
    assert value is None or isinstance(value, int | str)
    return value


def diff(old: Entry, new: Entry, attributes: tuple[str, ...]) -> list[AttributeChange]:
    """The attributes (of those the policy names) that differ, old and new."""
    changes: list[AttributeChange] = []
    for name in attributes:
        before = getattr(old, name)
        after = getattr(new, name)
        if before == after:
            continue
        if (name in ("sha256", "blake2b") and (before is None or after is None)
                and old.type == new.type):
            continue  # no digest on one side: a problem, reported as such
        changes.append(AttributeChange(name=name, old=_value(name, before),
                                       new=_value(name, after)))
    return changes


def _progress_text(done: int, scanner: Scanner) -> str:
    return f"{done} entries, {scanner.bytes / 1e6:.1f} MB hashed"


def _scan(scanner: Scanner, check_cancelled: Callable[[], None]
          ) -> Iterator[tuple[Entry, PathRule]]:
    """The scanner's results; a scan stopped mid-file ends as the cancel it was."""
    try:
        yield from scanner
    except Stopped:
        check_cancelled()
        raise


def take_baseline(store: Store, policy: GuardPolicy, caller_uid: int, progress: Progress,
                  cancelled: Callable[[], bool], check_cancelled: Callable[[], None]
                  ) -> tuple[BaselineInfo, list[Change]]:
    if not policy.paths:
        raise OperationFailed(f"the policy {policy.file} names no paths")
    scanner = Scanner(policy, cancelled)
    problems: list[Change] = []

    def batches() -> Iterator[list[Entry]]:
        done = 0
        batch: list[Entry] = []
        for entry, _rule in _scan(scanner, check_cancelled):
            batch.append(entry)
            if entry.problem is not None or entry.type in SPECIAL:
                problem = entry.problem or (f"special file ({entry.type}): attributes only, "
                                            "content not read")
                if len(problems) < 100:
                    problems.append(Change(path=wire_path(entry.path), kind="problem",
                                           type=entry.type,  # type: ignore[arg-type]
                                           problem=problem))
            if len(batch) >= BATCH:
                check_cancelled()
                done += len(batch)
                progress(done, scanner.discovered, _progress_text(done, scanner))
                yield batch
                batch = []
        check_cancelled()
        done += len(batch)
        yield batch
        progress(done, max(done, scanner.discovered), _progress_text(done, scanner))

    with store.session() as conn:
        info = store.write_baseline(conn, batches(), caller_uid)
    return info, problems


def run_check(store: Store, policy: GuardPolicy, *, trigger: str, caller_uid: int,
              progress: Progress, cancelled: Callable[[], bool],
              check_cancelled: Callable[[], None]) -> tuple[ReportInfo, list[Change]]:
    """Compare the trees with the current baseline and store the report."""
    if not policy.paths:
        raise OperationFailed(f"the policy {policy.file} names no paths")
    started = time.monotonic()
    scanner = Scanner(policy, cancelled)
    counts = Counts()
    first: list[Change] = []
    with store.session() as conn:
        bid = store.current_baseline_id(conn)
        if bid is None:
            raise OperationFailed("there is no baseline yet: run guard.baseline first")
        conn.execute("CREATE TEMP TABLE seen(path BLOB PRIMARY KEY) WITHOUT ROWID")
        conn.execute("CREATE TEMP TABLE found(path BLOB PRIMARY KEY, kind TEXT, type TEXT, "
                     "changes BLOB, problem TEXT, new_entry BLOB) WITHOUT ROWID")
        # One read transaction: the baseline cannot change under the comparison.
        conn.execute("BEGIN")
        try:
            seen: list[tuple[bytes]] = []
            found: list[tuple[object, ...]] = []

            def record(path: bytes, kind: str, type_: str, changes: list[AttributeChange],
                       problem: str | None, new: Entry | None) -> None:
                found.append((path, kind, type_, _changes_encoder.encode(changes), problem,
                              None if new is None else msgspec.msgpack.encode(tuple(new))))
                if len(first) < FIRST:
                    first.append(Change(path=wire_path(path), kind=kind,  # type: ignore[arg-type]
                                        type=type_,  # type: ignore[arg-type]
                                        attributes=changes, problem=problem))

            def flush() -> None:
                conn.executemany("INSERT OR IGNORE INTO temp.seen(path) VALUES (?)", seen)
                conn.executemany("INSERT OR REPLACE INTO temp.found VALUES (?, ?, ?, ?, ?, ?)",
                                 found)
                seen.clear()
                found.clear()

            lookup = f"SELECT {ENTRY_COLUMNS} FROM entries WHERE baseline_id=? AND path=?"
            for entry, rule in _scan(scanner, check_cancelled):
                check_cancelled()
                counts.checked += 1
                seen.append((entry.path,))
                row = conn.execute(lookup, (bid, entry.path)).fetchone()
                if row is None:
                    counts.added += 1
                    record(entry.path, "added", entry.type, [], entry.problem, entry)
                elif entry.problem is None and row == entry:
                    pass  # unchanged in every attribute (the common case): nothing to diff
                else:
                    changes = diff(Entry(*row), entry, rule.attributes)
                    if entry.problem is not None:
                        counts.problems += 1
                        record(entry.path, "problem", entry.type, changes, entry.problem, entry)
                    elif changes:
                        counts.changed += 1
                        record(entry.path, "changed", entry.type, changes, None, entry)
                if len(seen) >= 2000:
                    flush()
                if counts.checked % 16 == 0:
                    progress(counts.checked, scanner.discovered,
                             _progress_text(counts.checked, scanner))
            check_cancelled()
            flush()
            for path, type_ in conn.execute(
                    "SELECT e.path, e.type FROM entries e WHERE e.baseline_id=? AND NOT EXISTS "
                    "(SELECT 1 FROM temp.seen s WHERE s.path=e.path)", (bid,)).fetchall():
                counts.removed += 1
                record(path, "removed", type_, [], None, None)
            flush()
            progress(counts.checked, counts.checked, _progress_text(counts.checked, scanner))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        with store.write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                cur = conn.execute(
                    "INSERT INTO reports(created, baseline_id, trigger, caller_uid, "
                    "files_checked, added, removed, changed, problems, elapsed_s) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (time.time(), bid, trigger, caller_uid, counts.checked, counts.added,
                     counts.removed, counts.changed, counts.problems,
                     round(time.monotonic() - started, 3)))
                rid = cur.lastrowid
                conn.execute("INSERT INTO findings(report_id, path, kind, type, changes, "
                             "problem, new_entry) SELECT ?, path, kind, type, changes, "
                             "problem, new_entry FROM temp.found", (rid,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        assert rid is not None
        info = store.report_info(conn, rid)
    assert info is not None
    return info, first


def report_page(store: Store, report_id: int, offset: int, limit: int,
                kinds: list[str]) -> tuple[ReportInfo, list[Change], int]:
    with store.session() as conn:
        info = store.report_info(conn, report_id)
        if info is None:
            raise OperationFailed(
                "there are no reports yet" if report_id == 0 else f"no report {report_id}",
                report_id=report_id)
        where = "report_id=?"
        args: list[object] = [info.report_id]
        if kinds:
            where += f" AND kind IN ({', '.join('?' * len(kinds))})"
            args.extend(kinds)
        total = conn.execute(f"SELECT count(*) FROM findings WHERE {where}", args).fetchone()[0]
        rows = conn.execute(
            f"SELECT path, kind, type, changes, problem, accepted FROM findings WHERE {where} "
            "ORDER BY path LIMIT ? OFFSET ?", [*args, limit, offset]).fetchall()
    changes = [
        Change(path=wire_path(p), kind=k, type=t,
               attributes=_changes_decoder.decode(c) if c else [], problem=pr,
               accepted=bool(a))
        for p, k, t, c, pr, a in rows
    ]
    return info, changes, total


def accept(store: Store, report_id: int, paths: list[str]) -> AcceptResult:
    wanted = {os.fsencode(p) for p in paths}
    with store.session() as conn, store.write_lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            info = store.report_info(conn, report_id)
            if info is None:
                raise OperationFailed(f"no report {report_id}", report_id=report_id)
            bid = store.current_baseline_id(conn)
            if info.baseline_id != bid:
                raise OperationFailed(
                    f"report {report_id} compared against baseline {info.baseline_id}, but "
                    f"baseline {bid} is in force now: run a new check",
                    report_id=report_id, baseline_id=bid)
            rows = conn.execute("SELECT path, kind, new_entry FROM findings WHERE report_id=? "
                                "AND accepted=0", (report_id,)).fetchall()
            matched: set[bytes] = set()
            sql = (f"INSERT OR REPLACE INTO entries(baseline_id, {ENTRY_COLUMNS}) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            for path, kind, new_entry in rows:
                if wanted and path not in wanted:
                    continue
                matched.add(path)
                if kind == "removed":
                    conn.execute("DELETE FROM entries WHERE baseline_id=? AND path=?",
                                 (bid, path))
                else:
                    conn.execute(sql, (bid, *msgspec.msgpack.decode(new_entry)))
                conn.execute("UPDATE findings SET accepted=1 WHERE report_id=? AND path=?",
                             (report_id, path))
            conn.execute("UPDATE reports SET accepted=accepted+? WHERE id=?",
                         (len(matched), report_id))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    skipped = sorted(wire_path(p) for p in wanted - matched)
    assert bid is not None
    return AcceptResult(report_id=report_id, baseline_id=bid, accepted=len(matched),
                        skipped=skipped)
