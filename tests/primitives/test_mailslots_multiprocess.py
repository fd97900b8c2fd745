r"""Mailslots across real processes (ref 4.12, 4.16, 4.21, 4.31, 4.32).

Children are ``python -c`` scripts driven over stdin/stdout lines; every
wait is bounded and nothing synchronises by sleeping. Only processes
started here are killed, through their own Popen handles.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from aether.errors import NotFoundError
from aether.primitives.mailslots import (
    Mailslot,
    MailslotGoneError,
    mailslot_status,
    open_mailslot,
)
from aether.testing.child import ScriptedChild

TIMEOUT = 30.0
NAME = r"\\.\mailslot\mp\inbox"

WRITER = textwrap.dedent(
    """
    import struct, sys
    from aether.primitives.mailslots import open_mailslot
    name, index, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    pack = struct.Struct("<II").pack
    with open_mailslot(name) as w:
        print("ready", flush=True)
        sys.stdin.readline()
        for seq in range(count):
            w.write(pack(index, seq) + b"." * (seq % 50))
    print("done", flush=True)
    """
)

CREATOR = textwrap.dedent(
    """
    import sys
    from aether.primitives.mailslots import Mailslot
    slot = Mailslot.create(sys.argv[1], read_timeout=0)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "count":
            print(slot.info().message_count, flush=True)
    """
)


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "rt"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("AETHER_RUNTIME_DIR", str(path))
    monkeypatch.setenv("AETHER_MAILSLOT_BROADCAST", "127.255.255.255")
    return path


class Child(ScriptedChild):
    def __init__(self, script: str, *args: str) -> None:
        super().__init__(script, *args, timeout=TIMEOUT)


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        child.kill()


def spawn(children: list[Child], script: str, *args: str) -> Child:
    child = Child(script, *args)
    children.append(child)
    assert child.line() == "ready"
    return child


def test_eight_writers_ten_thousand_each(children: list[Child]) -> None:
    # issue 3 / ref 4.2 items 12, 16: none lost, none out of order per writer
    writers_n, count = 8, 10_000
    with Mailslot.create(NAME, read_timeout=int(TIMEOUT * 1000)) as slot:
        writers = [spawn(children, WRITER, NAME, str(i), str(count)) for i in range(writers_n)]
        for w in writers:
            w.post("go")
        next_seq = [0] * writers_n
        unpack = struct.Struct("<II").unpack_from
        for _ in range(writers_n * count):
            message = slot.read()
            index, seq = unpack(message)
            assert seq == next_seq[index], f"writer {index}: got {seq}, expected {next_seq[index]}"
            assert len(message) == 8 + seq % 50
            next_seq[index] += 1
        assert next_seq == [count] * writers_n
        assert [w.line() for w in writers] == ["done"] * writers_n
        assert slot.info().message_count == 0
        assert slot.dropped == 0


def test_mailslot_dies_with_killed_creator(children: list[Child], runtime_dir: Path) -> None:
    # ref 4.4 items 31-32: the mailslot goes with its creator, even on SIGKILL
    creator = spawn(children, CREATOR, NAME)
    assert mailslot_status(NAME).creator_pid == creator.proc.pid
    writer = open_mailslot(NAME)
    writer.write(b"one")
    writer.write(b"")
    creator.post("count")
    assert creator.line() == "2"  # ref 4.2 item 17, across processes
    creator.kill()
    with pytest.raises(MailslotGoneError):
        writer.write(b"after death")
    writer.close()
    with pytest.raises(NotFoundError):
        open_mailslot(NAME)
    with Mailslot.create(NAME, read_timeout=0) as again, open_mailslot(NAME) as w:
        w.write(b"reborn")
        assert again.read() == b"reborn"


def test_second_creator_in_another_process_fails(children: list[Child]) -> None:
    # ref 4.1 item 4 across processes; ref 4.3 item 21: one reader
    with Mailslot.create(NAME):
        child = Child(CREATOR, NAME)
        children.append(child)
        assert child.proc.wait(timeout=TIMEOUT) != 0
        assert child.proc.stderr is not None
        assert "ERROR_ALREADY_EXISTS" in child.proc.stderr.read()


def test_normal_exit_without_close_removes_files(runtime_dir: Path) -> None:
    # ref 4.4 item 31: the process exiting deletes the mailslot, leaving no files
    code = (
        "from aether.primitives.mailslots import Mailslot\n"
        f"slot = Mailslot.create({NAME!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=TIMEOUT)
    assert list((runtime_dir / "mailslots").iterdir()) == []
