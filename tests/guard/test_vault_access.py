"""Quarantine and restore round trips; who may call what; policy reload."""

from __future__ import annotations

import json
import os
import signal
import stat

import pytest
from guard_support import needs_root, policy_text, small_tree

import aether
from aether.osapi import drop_privileges, pidfd_open, set_dumpable, wait_pidfd
from aether_guard import schema

NOBODY = 65534


def _stat(path) -> dict[str, int]:
    st = os.lstat(path)
    return {k: getattr(st, k) for k in ("st_mode", "st_uid", "st_gid", "st_size",
                                        "st_atime_ns", "st_mtime_ns")}


def test_quarantine_and_restore_round_trip_exactly(genv):
    small_tree(genv.tree, 4)
    victim = genv.tree / "d0" / "suspicious"
    content = os.urandom(300_000)
    victim.write_bytes(content)
    os.chmod(victim, 0o4751 if os.geteuid() == 0 else 0o751)
    if os.geteuid() == 0:
        os.chown(victim, 1234, 4321)
        os.chmod(victim, 0o4751)  # chown cleared the set-uid bit
    os.utime(victim, ns=(1_600_000_000_123_456_789, 1_500_000_000_987_654_321))
    before = _stat(victim)
    genv.start()
    with genv.client() as c:
        entry = c.call(schema.Quarantine(path=str(victim)))
        assert not os.path.lexists(victim)
        assert entry.sha256 == __import__("hashlib").sha256(content).hexdigest()
        assert (entry.mode, entry.uid, entry.gid, entry.atime_ns, entry.mtime_ns) == (
            before["st_mode"], before["st_uid"], before["st_gid"], before["st_atime_ns"],
            before["st_mtime_ns"])
        vault = genv.state / "vault"
        vst = os.lstat(vault)
        assert stat.S_IMODE(vst.st_mode) == 0o700 and vst.st_uid == os.geteuid()
        assert [e.entry_id for e in c.call(schema.Vault()).entries] == [entry.entry_id]

        victim.write_text("an impostor")  # something new in its place: restore refuses
        with pytest.raises(aether.OperationError) as err:
            c.call(schema.Restore(entry_id=entry.entry_id))
        assert "exists again" in err.value.message
        victim.unlink()

        restored = c.call(schema.Restore(entry_id=entry.entry_id))
        assert restored.restored_at is not None
        assert _stat(victim) == before  # before reading it: reading moves atime
        assert victim.read_bytes() == content
        assert c.call(schema.Vault()).entries == []
        with pytest.raises(aether.OperationError) as err:
            c.call(schema.Restore(entry_id=entry.entry_id))
        assert "already restored" in err.value.message
        with pytest.raises(aether.OperationError):
            c.call(schema.Quarantine(path=str(genv.tree / "d0")))  # not a regular file


def _as_nobody(path, body) -> dict:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 0
        try:
            drop_privileges(NOBODY)
            set_dumpable(True)  # a dumpable process, like an ordinary user's
            with aether.Client(path, schema=schema, transport="memory") as client:
                out = {"ok": True, "value": body(client)}
        except BaseException as exc:
            out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            code = 1
        os.write(w, json.dumps(out).encode())
        os._exit(code)
    os.close(w)
    fd = pidfd_open(pid)
    try:
        if not wait_pidfd(fd, 60):
            os.kill(pid, signal.SIGKILL)
    finally:
        os.close(fd)
    os.waitpid(pid, 0)
    with os.fdopen(r, "rb") as fh:
        return json.loads(fh.read() or b'{"ok": false, "error": "no output"}')


def _calls(client) -> dict[str, str]:
    out = {}
    for name, params in (("baseline", schema.Baseline()),
                         ("accept", schema.Accept(report_id=1)),
                         ("quarantine", schema.Quarantine(path=os.environ["VICTIM"])),
                         ("restore", schema.Restore(entry_id=1)),
                         ("check", schema.Check()),
                         ("status", schema.GuardStatusParams())):
        try:
            client.call(params)
            out[name] = "OK"
        except aether.OperationError as exc:
            out[name] = exc.status_name
    return out


@needs_root
def test_unprivileged_uid_is_rejected_and_nothing_changes(genv):
    os.chmod(genv.runtime, 0o755)
    small_tree(genv.tree, 6)
    victim = genv.tree / "d1" / "f001.txt"
    os.environ["VICTIM"] = str(victim)
    genv.start("--mode", "0666")
    with genv.client() as c:
        first = c.call(schema.Baseline()).baseline
        report = c.call(schema.Check()).report
        c.call(schema.Quarantine(path=str(genv.tree / "d2" / "f002.txt")))
    db_before = genv.query("SELECT * FROM entries ORDER BY path")
    vault_before = genv.query("SELECT * FROM vault")

    result = _as_nobody(genv.socket, _calls)
    assert result["ok"], result
    calls = result["value"]
    for op in ("baseline", "accept", "quarantine", "restore"):
        assert calls[op] == "REJECTED_UNAUTHORIZED", calls
    assert calls["check"] == "OK" and calls["status"] == "OK"  # read ops: no read_group set

    assert victim.exists()
    assert genv.query("SELECT * FROM entries ORDER BY path") == db_before
    assert genv.query("SELECT * FROM vault") == vault_before
    with genv.client() as c:
        st = c.call(schema.GuardStatusParams())
        assert st.baseline.baseline_id == first.baseline_id
        assert st.last_report.report_id == report.report_id + 1  # nobody's check only
    log = genv.services[-1].stderr_text()
    assert "op=guard.baseline uid=65534" in log and "DENIED" in log


@needs_root
def test_sighup_reloads_the_policy_and_keeps_it_when_the_new_one_is_bad(genv):
    os.chmod(genv.runtime, 0o755)
    small_tree(genv.tree, 3)
    os.environ["VICTIM"] = str(genv.tree / "d0" / "f000.txt")
    svc = genv.start("--mode", "0666")
    # Read operations only for gid 0: nobody is refused even guard.status.
    genv.policy.write_text(policy_text(genv.tree, access='read_group = 0'))
    svc.proc.send_signal(signal.SIGHUP)
    svc.wait_for("RELOADING=1", 10)
    svc.wait_for("READY=1", 10)
    calls = _as_nobody(genv.socket, _calls)["value"]
    assert calls["status"] == "REJECTED_UNAUTHORIZED" and calls["check"] == (
        "REJECTED_UNAUTHORIZED"), calls

    genv.policy.write_text("[guard]\nhash_workers = 'many'\n")
    svc.proc.send_signal(signal.SIGHUP)
    svc.wait_for("RELOADING=1", 10)
    status = svc.wait_for("READY=1", 10)
    assert "reload failed" in status
    assert "keeping the previous configuration" in svc.stderr_text()
    calls = _as_nobody(genv.socket, _calls)["value"]
    assert calls["status"] == "REJECTED_UNAUTHORIZED"  # the old (reloaded) policy holds
    with genv.client() as c:
        assert c.call(schema.GuardStatusParams()).paths[0].path == str(genv.tree)
