"""guard.watch delivers inotify events as progress; the schedule runs checks."""

from __future__ import annotations

import os

import pytest
from guard_support import small_tree

import aether
from aether.testing import wait_until
from aether_guard import schema


def test_watch_delivers_events_until_cancelled(genv):
    small_tree(genv.tree, 3)
    genv.write_policy(exclude=("*.tmp",))
    svc = genv.start()
    events: list[schema.WatchEvent] = []
    seqs: list[int] = []
    sub = genv.tree / "newdir"
    ops_done: list[str] = []

    def act() -> None:
        # Runs on the first (empty) batch-free moment: after the watch is set up.
        (genv.tree / "d0" / "f000.txt").write_text("changed\n")
        os.chmod(genv.tree / "d1" / "f001.txt", 0o600)
        (genv.tree / "skip.tmp").write_text("excluded\n")
        sub.mkdir()
        (genv.tree / "d2" / "f002.txt").unlink()
        ops_done.append("first")

    def on_progress(op) -> None:
        batch = schema.decode_watch_batch(op.progress_info.message)
        if batch is None:
            return
        seqs.append(batch.seq)
        events.extend(batch.events)
        if ops_done == ["first"] and any(e.path == str(sub) for e in batch.events):
            (sub / "inner.txt").write_text("in a directory created after the watch began\n")
            ops_done.append("second")
        if any(e.path == str(sub / "inner.txt") for e in events):
            op.cancel()

    with genv.client() as c:
        op = c.start(schema.Watch(), on_progress=on_progress)
        wait_until(lambda: _watchers(genv) == 1, 10,
                   "the subscription to be set up", watch_pid=svc.pid)
        act()
        summary = op.wait(timeout=30)
    assert summary.ended == "cancelled" and summary.watched_dirs >= 4
    kinds = {(e.kind, os.path.relpath(e.path, genv.tree)) for e in events}
    assert ("modified", "d0/f000.txt") in kinds
    assert ("attrib", "d1/f001.txt") in kinds
    assert ("created", "newdir") in kinds
    assert ("deleted", "d2/f002.txt") in kinds
    assert any(k == "created" and p == "newdir/inner.txt" for k, p in kinds)
    assert not any(p.endswith(".tmp") for _, p in kinds)
    assert seqs == sorted(seqs) and summary.events >= len(events)


def _watchers(genv) -> int:
    with genv.client() as c:
        return c.call(schema.GuardStatusParams()).watchers


def test_scheduled_checks_are_logged_as_security_events(genv):
    small_tree(genv.tree, 3)
    genv.write_policy(extra='schedule = "1s"')
    svc = genv.start()
    with genv.client() as c:
        assert c.call(schema.GuardStatusParams()).schedule_s == 1.0
        c.call(schema.Baseline())
        (genv.tree / "intruder").write_text("x")

        def scheduled() -> bool:
            return any(r.trigger == "schedule" and r.added == 1
                       for r in c.call(schema.Reports()).reports)

        wait_until(scheduled, 30, "a scheduled check to find the new file", watch_pid=svc.pid)

    # The report is stored, and so visible to Reports, just before its
    # security event is logged: wait for the line rather than race it.
    def logged() -> bool:
        log = svc.stderr_text()
        return "aether.security: service=guard report=" in log and "trigger=schedule" in log \
            and f"added {genv.tree}/intruder" in log

    wait_until(logged, 10, "the scheduled check's security events in the log", watch_pid=svc.pid)


def test_without_a_policy_file_guard_starts_but_monitors_nothing(genv):
    genv.policy.unlink()
    os.environ.pop("AETHER_GUARD_POLICY", None)
    svc = aether.testing.ServiceProcess(
        "guard", genv.socket, env={"AETHER_RUNTIME_DIR": str(genv.runtime),
                                   "AETHER_GUARD_STATE": str(genv.state),
                                   "XDG_CONFIG_HOME": str(genv.base / "noconfig"),
                                   "HOME": str(genv.base)})
    genv.services.append(svc)
    svc.start()
    with genv.client() as c:
        assert c.call(schema.GuardStatusParams()).paths == []
        with pytest.raises(aether.OperationError) as err:
            c.call(schema.Baseline())
        assert "names no paths" in err.value.message
    assert "no policy at" in svc.stderr_text()
