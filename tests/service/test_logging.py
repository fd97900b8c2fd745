"""A service's log: journal priorities under systemd, syslog via /dev/log, audit uids."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from aether.testing import python_env

SNIPPET = """
import logging, sys
from aether.service.logsetup import configure_service_logging
where = configure_service_logging("guard", dev_log=sys.argv[1])
print(where, flush=True)
logging.getLogger("aether.service").info("started")
logging.getLogger("aether.security").warning("finding one")
logging.getLogger("aether.audit").error("line one\\nline two")
"""


def _run(args: list[str], env: dict[str, str], stderr) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SNIPPET, *args], env=python_env(env),
                          stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=60)


def test_journal_stream_gets_priority_prefixes(tmp_path):
    err = tmp_path / "stderr"
    with open(err, "w") as fh:
        st = os.fstat(fh.fileno())
        r = _run(["/nonexistent"], {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, fh)
    assert r.stdout.strip() == "journal"
    lines = err.read_text().splitlines()
    assert lines == ["<6>guard: aether.service: started",
                     "<4>guard: aether.security: finding one",
                     "<3>guard: aether.audit: line one",
                     "<3>guard: aether.audit: line two"]


def test_journal_stream_of_another_file_is_ignored(tmp_path):
    with open(tmp_path / "stderr", "w") as fh:
        r = _run(["/nonexistent"], {"JOURNAL_STREAM": "1:2"}, fh)
    assert r.stdout.strip() == "stderr"
    text = (tmp_path / "stderr").read_text()
    assert "INFO guard[" in text and "<6>" not in text


def test_dev_log_gets_syslog_records():
    directory = tempfile.mkdtemp(prefix="ag-log-")
    path = os.path.join(directory, "log")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    try:
        r = _run([path], {}, subprocess.PIPE)
        assert r.stdout.strip() == "syslog"
        records = [sock.recv(4096).decode() for _ in range(3)]
    finally:
        sock.close()
        os.unlink(path)
        os.rmdir(directory)
    # <facility daemon (3) * 8 + priority>ident[pid]: logger: message
    assert records[0].startswith("<30>aether-guard[") and records[0].endswith(
        "aether.service: started\x00")
    assert records[1].startswith("<28>") and "finding one" in records[1]
    assert "started" in r.stderr  # and stderr too, for a service run in a terminal


def test_privileged_operations_are_audited_with_the_caller_uid(tmp_path):
    import aether
    from aether.testing import ServiceProcess
    from aether_guard import schema

    tree = tmp_path / "t"
    tree.mkdir()
    (tmp_path / "p.toml").write_text(f'[[paths]]\npath = "{tree}"\n')
    runtime = Path(tempfile.mkdtemp(prefix="ag-rt-"))
    svc = ServiceProcess("guard", runtime / "guard.ctl", env={
        "AETHER_RUNTIME_DIR": str(runtime), "AETHER_GUARD_POLICY": str(tmp_path / "p.toml"),
        "AETHER_GUARD_STATE": str(tmp_path / "state")}).start()
    try:
        with aether.Client(runtime / "guard.ctl", schema=schema) as c:
            c.call(schema.Baseline())
        assert svc.stop() == 0
    finally:
        svc.kill()
    log = svc.stderr_text()
    assert f"aether.audit: service=guard op=guard.baseline uid={os.geteuid()}" in log
    assert "service guard 0" in log and "started" in log and "service guard stopped" in log
