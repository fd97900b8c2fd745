r"""``aether mailslot``: help, JSON output, errors and exit codes.

The reading commands create the mailslot and block, so they run as
subprocesses whose lines are awaited with a timeout; they are stopped by
SIGTERM to their own pid.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from aether.cli.main import cli
from aether.primitives.mailslots import Mailslot

TIMEOUT = 20.0
NAME = r"\\.\mailslot\cli\demo"


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "rt"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("AETHER_RUNTIME_DIR", str(path))
    monkeypatch.setenv("AETHER_MAILSLOT_BROADCAST", "127.255.255.255")
    return path


def run(*args: str, input: bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


class Reader:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aether", "mailslot", *args, "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy(),
        )
        self._pending = b""

    def line(self) -> dict[str, object]:
        """The next output line; unbuffered, so lines that arrive together
        are not hidden from select() in a file object's buffer."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._pending:
            ready, _, _ = select.select([fd], [], [], TIMEOUT)
            assert ready, "no output in time"
            chunk = os.read(fd, 65536)
            assert chunk, self.proc.stderr.read() if self.proc.stderr else b""
            self._pending += chunk
        text, _, self._pending = self._pending.partition(b"\n")
        return dict(json.loads(text))


@pytest.fixture
def readers() -> Iterator[list[Reader]]:
    started: list[Reader] = []
    yield started
    for r in started:
        if r.proc.poll() is None:
            r.proc.kill()
        r.proc.wait(timeout=TIMEOUT)
        for stream in (r.proc.stdout, r.proc.stderr):
            if stream is not None:
                stream.close()


def start(readers: list[Reader], *args: str) -> Reader:
    reader = Reader(*args)
    readers.append(reader)
    assert reader.line()["event"] == "ready"
    return reader


def test_help() -> None:
    code, out, _ = run("mailslot", "--help")
    assert code == 0
    for word in ("create", "read", "write", "info", "424"):
        assert word in out


def test_create_serves_messages_until_sigterm(readers: list[Reader]) -> None:
    # ref 4.2 items 16-17 (one message per write, empty ones too), 4.1 item 2
    server = start(readers, "create", NAME)
    code, out, err = run("mailslot", "write", r"\\.\MAILSLOT\CLI\DEMO", "one", "two", "--json")
    assert code == 0, err
    assert [json.loads(line)["size"] for line in out.splitlines()] == [3, 3]
    assert run("mailslot", "write", NAME, "--hex", "")[0] == 0
    got = [server.line() for _ in range(3)]
    assert [g["text"] for g in got] == ["one", "two", ""]
    code, out, _ = run("mailslot", "info", NAME, "--json")
    status = json.loads(out)
    assert code == 0 and status["creator_pid"] == server.proc.pid
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=TIMEOUT) == 0
    code, _, err = run("mailslot", "write", NAME, "late")
    assert code == 5 and "ERROR_FILE_NOT_FOUND" in err  # ref 4.4 item 31


def test_read_count_and_exit(readers: list[Reader]) -> None:
    reader = start(readers, "read", NAME, "--count", "2")
    assert run("mailslot", "write", NAME, "--stdin", input=b"first\nsecond\n")[0] == 0
    assert reader.line()["text"] == "first"
    assert reader.line()["text"] == "second"
    assert reader.proc.wait(timeout=TIMEOUT) == 0


def test_read_timeout_is_an_error() -> None:
    # ref 4.3 item 24: ERROR_SEM_TIMEOUT
    code, _, err = run("mailslot", "read", NAME, "--timeout", "0")
    assert code == 5 and "ERROR_SEM_TIMEOUT" in err


def test_errors_and_usage() -> None:
    code, _, err = run("mailslot", "write", NAME, "x")
    assert code == 5 and "ERROR_FILE_NOT_FOUND" in err  # ref 4.2 item 11
    code, _, err = run("mailslot", "read", "blah")
    assert code == 5 and "ERROR_INVALID_NAME" in err  # ref 4.1 item 3
    with Mailslot.create(NAME, max_message_size=3):
        code, _, err = run("mailslot", "write", NAME, "toolong")
        assert code == 5 and "exceeds" in err  # ref 4.2 item 19
        code, _, err = run("mailslot", "read", NAME, "--timeout", "0")
        assert code == 5 and "ERROR_ALREADY_EXISTS" in err  # ref 4.1 item 4
        code, out, _ = run("mailslot", "info", NAME)
        assert code == 0 and "max message size 3" in out
    code, _, err = run("mailslot", "write", r"\\*\mailslot\x", "y" * 425)
    assert code == 5 and "ERROR_BAD_NETPATH" in err  # ref 4.2 item 14
    assert run("mailslot", "write", NAME)[0] == 2
