"""Consistency under change, cancel, kill -9 and restarts, with a real Guard."""

from __future__ import annotations

import hashlib
import os
import signal
import threading

import pytest
from guard_support import slow_tree, small_tree

import aether
from aether_guard import schema


def _start_interrupted(client, params, at: int, action):
    """Start ``params``; once its progress passes ``at`` entries, run
    ``action(op)`` (once, from the progress callback)."""
    fired = []

    def on_progress(op) -> None:
        if not fired and op.progress_info.done >= at:
            fired.append(op.progress_info.done)
            action(op)

    op = client.start(params, on_progress=on_progress)
    return op, fired


def test_a_file_changed_during_the_scan_is_recorded_consistently(genv):
    """A writer rewrites a file (all 'a' or all 'b', different sizes) while
    baselines and checks run: every recorded digest is the digest of a
    content that existed as a whole at the recorded size, or the file is
    reported as changed during the scan; never a torn read."""
    small_tree(genv.tree, 200)
    hot = genv.tree / "hot.bin"
    hot.write_bytes(b"a" * (4 << 20))
    stop = threading.Event()
    writes = 0

    def writer() -> None:
        nonlocal writes
        i = 0
        while not stop.is_set():
            i += 1
            # Versions of equal size have equal content (i % 64 keeps the parity):
            # timestamps as coarse as the kernel's tick cannot tell those apart.
            data = (b"a" if i % 2 else b"b") * ((4 << 20) + (i % 64) * 4096)
            fd = os.open(hot, os.O_WRONLY | os.O_TRUNC)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            writes += 1

    genv.start()
    thread = threading.Thread(target=writer)
    thread.start()
    outcomes: set[str] = set()
    try:
        with genv.client() as c:
            for _ in range(4):
                c.call(schema.Baseline())
                rows = genv.query("SELECT size, sha256, problem FROM entries WHERE path=?",
                                  os.fsencode(hot))
                assert len(rows) == 1
                size, digest, problem = rows[0]
                if problem is not None:
                    assert problem == "changed during the scan" and digest is None
                    outcomes.add("unstable")
                else:
                    valid = {hashlib.sha256(ch * size).hexdigest() for ch in (b"a", b"b")}
                    assert digest in valid, f"torn read: size {size}, digest {digest}"
                    outcomes.add("stable")
                report = c.call(schema.Check()).report
                page = c.call(schema.Report(report_id=report.report_id))
                for change in page.changes:
                    if change.path == str(hot) and change.kind == "problem":
                        assert change.problem == "changed during the scan"
    finally:
        stop.set()
        thread.join()
    assert writes > 4
    assert outcomes  # each run was one of the two consistent outcomes


def test_cancel_mid_baseline_keeps_the_old_baseline(genv):
    small_tree(genv.tree, 10)
    genv.start()
    with genv.client() as c:
        first = c.call(schema.Baseline()).baseline
        slow_tree(genv.tree)
        op, fired = _start_interrupted(c, schema.Baseline(), 3000, lambda o: o.cancel())
        with pytest.raises(aether.OperationError) as err:
            op.wait(timeout=60)
        assert fired and err.value.status_name == "CANCELLED"
        st = c.call(schema.GuardStatusParams())
        assert st.baseline is not None and st.baseline.baseline_id == first.baseline_id
        assert st.baseline.files == first.files
        assert st.running == []
    rows = genv.query("SELECT baseline_id, count(*) FROM entries GROUP BY baseline_id")
    assert rows == [(first.baseline_id, first.files)]


def test_kill_9_mid_baseline_then_restart_leaves_the_database_intact(genv):
    small_tree(genv.tree, 10)
    svc = genv.start()
    with genv.client() as c:
        first = c.call(schema.Baseline()).baseline
    slow_tree(genv.tree)
    c = genv.client()
    # Past 2000 entries, rows of the new baseline are in the WAL.
    op, fired = _start_interrupted(c, schema.Baseline(), 3000,
                                   lambda o: os.kill(svc.pid, signal.SIGKILL))
    with pytest.raises(aether.ServiceRestartedError) as err:
        op.wait(timeout=30)
    assert fired
    assert "outcome of guard.baseline is unknown" in str(err.value)
    svc.kill()  # reap
    genv.start()
    assert genv.query("PRAGMA integrity_check") == [("ok",)]
    # The same Client reconnects on its next call.
    st = c.call(schema.GuardStatusParams())
    assert st.baseline is not None and st.baseline.baseline_id == first.baseline_id
    assert st.baseline.files == first.files
    assert genv.query("SELECT baseline_id, count(*) FROM entries GROUP BY baseline_id") == [
        (first.baseline_id, first.files)]
    assert genv.query("SELECT count(*) FROM baselines WHERE id != ?", first.baseline_id) == [
        (0,)]
    c.close()


def test_sigterm_cancels_running_operations_and_the_client_reconnects(genv):
    small_tree(genv.tree, 10)
    svc = genv.start()
    c = genv.client()
    first = c.call(schema.Baseline()).baseline
    slow_tree(genv.tree)
    op, fired = _start_interrupted(c, schema.Baseline(), 3000,
                                   lambda o: svc.proc.send_signal(signal.SIGTERM))
    with pytest.raises(aether.OperationError) as err:
        op.wait(timeout=30)
    assert fired
    # Cancelled by the stopping service (a definite outcome), or the session
    # ended first (outcome unknown): never success.
    assert err.value.status_name in ("CANCELLED", "UNKNOWN")
    assert svc.proc.wait(30) == 0
    svc.kill()
    assert genv.query("SELECT count(*) FROM baselines") == [(1,)]
    genv.start()
    st = c.call(schema.GuardStatusParams())  # a new session on the restarted service
    assert st.baseline is not None and st.baseline.baseline_id == first.baseline_id
    c.close()
