r"""``aether mapping``: help, JSON output, errors and exit codes.

``create``/``open`` hold the name, so they run as real subprocesses whose
"ready" line is awaited with a timeout and which are stopped by SIGTERM to
their own pid; the short commands run in-process with CliRunner.
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
from aether.primitives.mapping import FileMapping

TIMEOUT = 20.0
NAME = "Local\\cli-demo"


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "rt"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("AETHER_RUNTIME_DIR", str(path))
    return path


def run(*args: str, input: bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


class Holder:
    """``aether mapping create|open ... --json`` running in the background."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aether", "mapping", *args, "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy(),
        )
        self._pending = b""

    def line(self) -> dict[str, object]:
        """The next output line, read unbuffered so select() sees every line."""
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

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=TIMEOUT)


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    started: list[Holder] = []
    yield started
    for h in started:
        if h.proc.poll() is None:
            h.proc.kill()
        h.proc.wait(timeout=TIMEOUT)
        for stream in (h.proc.stdout, h.proc.stderr):
            if stream is not None:
                stream.close()


def hold(holders: list[Holder], *args: str) -> dict[str, object]:
    holder = Holder(*args)
    holders.append(holder)
    return holder.line()


def test_help() -> None:
    code, out, _ = run("mapping", "--help")
    assert code == 0
    for word in ("create", "open", "read", "write", "info", "Global"):
        assert word in out
    code, out, _ = run("mapping", "create", "--help")
    assert code == 0 and "--size" in out and "--json" in out


def test_create_write_read_info_and_close(holders: list[Holder]) -> None:
    # ref 2.1 item 13 (created), 2.3 item 22 (gone after the holder stops)
    ready = hold(holders, "create", NAME, "--size", "64K")
    assert ready["event"] == "ready" and ready["size"] == 65536 and ready["created"] is True
    code, out, err = run("mapping", "write", NAME, "hello", "--offset", "70000", "--json")
    assert code == 2 and "past the end" in err
    code, out, err = run("mapping", "write", NAME, "hello", "--offset", "16", "--json")
    assert code == 0, err
    assert json.loads(out) == {"name": NAME, "offset": 16, "written": 5}
    code, out, _ = run("mapping", "read", NAME, "--offset", "16", "--length", "5", "--json")
    assert code == 0 and json.loads(out)["text"] == "hello"
    code, out, _ = run("mapping", "read", NAME, "--offset", "16", "--length", "5",
                       "--format", "text")
    assert out.strip() == "hello"
    code, out, _ = run("mapping", "read", NAME, "--length", "32")
    assert "68 65 6c 6c 6f" in out
    code, out, _ = run("mapping", "info", NAME, "--json")
    info = json.loads(out)
    assert info["size"] == 65536 and info["backing"] == "memory" and info["created"] is False
    holder = holders[0]
    assert holder.stop() == 0
    assert holder.line()["event"] == "closed"
    code, _, err = run("mapping", "info", NAME)
    assert code == 5 and "ERROR_FILE_NOT_FOUND" in err


def test_open_keeps_name_alive(holders: list[Holder]) -> None:
    # ref 2.6 item 42: the name lives while any holder does
    hold(holders, "create", NAME, "--size", "4096")
    opened = hold(holders, "open", NAME, "--access", "write")
    assert opened["created"] is False and opened["access"] == ["WRITE"]
    assert holders[0].stop() == 0
    code, _, _ = run("mapping", "info", NAME)
    assert code == 0
    assert holders[1].stop() == 0
    code, _, _ = run("mapping", "info", NAME)
    assert code == 5


def test_create_twice_and_open_existing(holders: list[Holder]) -> None:
    # ref 2.1 item 13: ERROR_ALREADY_EXISTS unless --open-existing
    hold(holders, "create", NAME, "--size", "8K")
    code, _, err = run("mapping", "create", NAME, "--size", "4K", "--hold-for", "0")
    assert code == 5 and "ERROR_ALREADY_EXISTS" in err
    code, out, _ = run("mapping", "create", NAME, "--size", "4K", "--open-existing",
                       "--hold-for", "0", "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and lines[0]["created"] is False and lines[0]["size"] == 8192
    assert lines[-1]["event"] == "closed"


def test_file_backed(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"abc" * 100)
    code, out, err = run("mapping", "create", "Local\\f", "--file", str(path), "--hold-for", "0")
    assert code == 0, err
    assert "300 bytes" in out and str(path) in out


def test_stdin_write_and_raw_read() -> None:
    with FileMapping.create(NAME, size=4096):
        code, _, err = run("mapping", "write", NAME, "--stdin", input=b"\x00\x01binary")
        assert code == 0, err
        result = CliRunner().invoke(cli, ["mapping", "read", NAME, "--length", "8",
                                          "--format", "raw"])
        assert result.stdout_bytes == b"\x00\x01binary"
        code, _, _ = run("mapping", "write", NAME, "--hex", "zz")
        assert code == 2


def test_errors_and_usage() -> None:
    code, _, err = run("mapping", "read", "absent")
    assert code == 5 and "no file mapping named 'absent'" in err
    code, _, err = run("mapping", "create", "global\\x", "--size", "4K")
    assert code == 5 and "ERROR_PATH_NOT_FOUND" in err
    code, _, err = run("mapping", "create", "x", "--size", "0", "--hold-for", "0")
    assert code == 5 and "ERROR_INVALID_PARAMETER" in err
    code, _, _ = run("mapping", "create", "x", "--size", "lots")
    assert code == 2
    code, _, _ = run("mapping", "write", "x")
    assert code == 2
