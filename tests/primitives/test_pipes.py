"""aether.primitives.pipes: win32-ipc-semantics.md section 3 on Linux.

Comments cite the reference items ("ref 3.8" = section 3, item 8). Children
are real subprocesses; every wait has a timeout and nothing synchronises by
sleeping.
"""

from __future__ import annotations

import gc
import hashlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from aether.errors import (
    ClosedResourceError,
    InvalidHandleError,
    InvalidParameterError,
    NoDataError,
    NotFoundError,
    PipeBrokenError,
    Win32Error,
)
from aether.osapi.fdpass import send_fds
from aether.osapi.pipes import pipe_max_size
from aether.primitives.atoms import GlobalAtomTable
from aether.primitives.pipes import (
    PipeReader,
    PipeToken,
    PipeWriter,
    adopt_fd,
    create_pipe,
    publish_end,
    receive_end,
    send_end,
    take_end,
)
from aether.testing.child import read_line as _read_line, send_line

TIMEOUT = 30.0
PAGE = os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "rt"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("AETHER_RUNTIME_DIR", str(path))
    return path


@pytest.fixture
def pipe() -> Iterator[tuple[PipeReader, PipeWriter]]:
    reader, writer = create_pipe()
    yield reader, writer
    reader.close()
    writer.close()


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()  # only our own children, by their Popen (pid)
        proc.wait(timeout=TIMEOUT)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def child(procs: list, code: str, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        pass_fds=pass_fds,
    )
    procs.append(proc)
    return proc


def read_line(proc: subprocess.Popen[str], timeout: float = TIMEOUT) -> str:
    return _read_line(proc, timeout)


def send(proc: subprocess.Popen[str], text: str) -> None:
    send_line(proc, text)


# Child that reads a pipe end to EOF and prints "<bytes> <sha256>".
READ_TO_EOF = """
import hashlib
def drain(end):
    h, n = hashlib.sha256(), 0
    with end:
        for chunk in end:
            h.update(chunk); n += len(chunk)
    print(n, h.hexdigest(), flush=True)
"""
PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, many times any pipe buffer here


def expected(data: bytes) -> str:
    return f"{len(data)} {hashlib.sha256(data).hexdigest()}"


# --------------------------------------------------------------------------
# Creation and buffer size (ref 3.1, 3.2)
# --------------------------------------------------------------------------


def test_ends_are_one_way(pipe: tuple[PipeReader, PipeWriter]) -> None:  # ref 3.1
    reader, writer = pipe
    assert isinstance(reader, PipeReader) and isinstance(writer, PipeWriter)
    assert not hasattr(reader, "write") and not hasattr(writer, "read")
    with pytest.raises(OSError):
        os.write(reader.fileno(), b"x")  # the kernel agrees: read-only fd
    with pytest.raises(OSError):
        os.read(writer.fileno(), 1)
    assert reader.identity == writer.identity


def test_default_size_is_linux_default(pipe: tuple[PipeReader, PipeWriter]) -> None:  # ref 3.2
    # Windows reports 4096 for nSize 0; Linux's default is 16 pages.
    assert pipe[0].buffer_size == pipe[1].buffer_size == 16 * PAGE


@pytest.mark.parametrize(
    ("asked", "got"),
    [(1, PAGE), (PAGE, PAGE), (PAGE + 1, 2 * PAGE), (100_000, 32 * PAGE), (1 << 20, 1 << 20)],
)
def test_size_is_rounded_up(asked: int, got: int) -> None:  # ref 3.2
    # nSize is a suggestion: Linux rounds up to a power-of-two number of pages.
    reader, writer = create_pipe(asked)
    with reader, writer:
        assert writer.buffer_size == got


def test_size_above_the_limit() -> None:  # ref 3.2
    limit = pipe_max_size()
    reader, writer = create_pipe(limit * 4)
    with reader, writer:
        # Root may exceed pipe-max-size (CAP_SYS_RESOURCE); others get the cap.
        expected_size = limit * 4 if os.geteuid() == 0 else limit
        assert writer.buffer_size >= min(expected_size, limit)


def test_bad_sizes() -> None:
    for bad in (-1, 1.5, True):
        with pytest.raises(InvalidParameterError):
            create_pipe(bad)  # type: ignore[arg-type]


def test_inheritable_flag() -> None:  # ref 3.16
    reader, writer = create_pipe()
    with reader, writer:
        assert not reader.inheritable and not writer.inheritable
    reader, writer = create_pipe(inheritable=True)
    with reader, writer:
        assert reader.inheritable and writer.inheritable
        reader.inheritable = False
        assert not reader.inheritable


# --------------------------------------------------------------------------
# Reading and writing (ref 3.4-3.10)
# --------------------------------------------------------------------------


def test_byte_stream_without_boundaries(pipe: tuple[PipeReader, PipeWriter]) -> None:  # ref 3.5
    reader, writer = pipe
    writer.write(b"abc")
    writer.write(b"def")
    assert reader.read(100) == b"abcdef"


def test_partial_reads_are_normal(pipe: tuple[PipeReader, PipeWriter]) -> None:  # ref 3.6
    reader, writer = pipe
    writer.write(b"12345")
    assert reader.read(100) == b"12345"  # returns what is there, does not wait for 100
    writer.write(b"xyz")
    assert reader.read(2) == b"xy"
    buf = bytearray(10)
    assert reader.readinto(buf) == 1 and buf[:1] == b"z"


def test_write_waits_for_the_reader() -> None:  # ref 3.4, 3.7
    reader, writer = create_pipe(1)  # one page
    result: list[int] = []
    with reader, writer:
        thread = threading.Thread(target=lambda: result.append(writer.write(PAYLOAD)))
        thread.start()
        received = bytearray()
        while len(received) < len(PAYLOAD):
            received += reader.read(65536)
        thread.join(TIMEOUT)
        assert not thread.is_alive()
    assert result == [len(PAYLOAD)] and received == PAYLOAD


def test_32k_write_completes(pipe: tuple[PipeReader, PipeWriter]) -> None:  # ref 3.7
    reader, writer = pipe
    assert writer.write(b"x" * 32768) == 32768
    assert reader.available() == 32768


def test_buffered_data_then_end_of_stream(pipe: tuple[PipeReader, PipeWriter]) -> None:
    # ref 3.8: after the writers close, buffered bytes first, then EOF.
    reader, writer = pipe
    writer.write(b"last words")
    writer.close()
    assert reader.read(4) == b"last"
    assert reader.read_all() == b" words"
    assert reader.read(10) == b""
    assert reader.read(10) == b""


def test_zero_length_write_is_invisible(pipe: tuple[PipeReader, PipeWriter]) -> None:
    # ref 3.9 does not apply: a 0-byte write puts nothing in a Linux pipe,
    # so the reader cannot see it (and never mistakes it for EOF).
    reader, writer = pipe
    assert writer.write(b"") == 0
    peek = reader.peek()
    assert peek.available == 0 and not peek.writers_closed and not peek.at_eof
    assert reader.read(0) == b""


def test_write_without_reader_is_no_data(pipe: tuple[PipeReader, PipeWriter]) -> None:
    # ref 3.10: Windows reports ERROR_NO_DATA (232) for a pipe being closed.
    reader, writer = pipe
    reader.close()
    assert writer.peer_closed()
    with pytest.raises(NoDataError) as info:
        writer.write(b"anyone?")
    assert info.value.win32_code == Win32Error.ERROR_NO_DATA == 232
    assert isinstance(info.value, BrokenPipeError)


def test_non_blocking_partial_write_not_applicable() -> None:
    # ref 3.11 does not apply: anonymous pipes are always blocking; write()
    # returns only with everything written (see test_write_waits_for_the_reader).
    reader, writer = create_pipe(1)
    with reader, writer:
        assert os.get_blocking(writer.fileno())


# --------------------------------------------------------------------------
# Peek (ref 3.12-3.14)
# --------------------------------------------------------------------------


def test_peek_does_not_consume(pipe: tuple[PipeReader, PipeWriter]) -> None:  # ref 3.12
    reader, writer = pipe
    empty = reader.peek(10)  # returns at once on an empty pipe
    assert (empty.available, empty.data, empty.writers_closed) == (0, b"", False)
    writer.write(b"hello world")
    assert reader.peek().available == 11
    assert reader.peek(5).data == b"hello"
    assert reader.peek(100).data == b"hello world"
    assert reader.read(100) == b"hello world"


def test_peek_large_content() -> None:  # ref 3.12
    reader, writer = create_pipe(1 << 20)
    with reader, writer:
        writer.write(PAYLOAD[:500_000])
        assert reader.peek(500_000).data == PAYLOAD[:500_000]
        assert reader.available() == 500_000


def test_peek_at_end_of_stream(pipe: tuple[PipeReader, PipeWriter]) -> None:  # ref 3.14
    reader, writer = pipe
    writer.write(b"ab")
    writer.close()
    peek = reader.peek(1)
    assert peek.writers_closed and not peek.at_eof and peek.data == b"a"
    reader.read(10)
    assert reader.peek(1).at_eof


# --------------------------------------------------------------------------
# Ownership (ref 3.15) and the handle wrapper contract
# --------------------------------------------------------------------------


def test_pipe_lives_while_an_end_is_open(pipe: tuple[PipeReader, PipeWriter]) -> None:
    # ref 3.15
    reader, writer = pipe
    writer.write(b"kept")
    writer.close()
    writer.close()  # idempotent
    assert reader.read(10) == b"kept"


def test_closed_end_raises(pipe: tuple[PipeReader, PipeWriter]) -> None:
    reader, _writer = pipe
    reader.close()
    with pytest.raises(ClosedResourceError):
        reader.read(1)
    with pytest.raises(ClosedResourceError):
        reader.fileno()
    assert reader.closed and "closed" in repr(reader)


def test_context_manager_and_detach() -> None:
    reader, writer = create_pipe()
    with reader as r:
        assert r is reader
    assert reader.closed
    fd = writer.detach()
    assert writer.closed
    os.close(fd)


def test_unclosed_end_warns() -> None:
    reader, writer = create_pipe()
    writer.close()
    with pytest.warns(ResourceWarning, match="unclosed pipe read end"):
        del reader
        gc.collect()


def test_adopt_fd_checks_kind(pipe: tuple[PipeReader, PipeWriter]) -> None:
    _reader, writer = pipe
    dup = adopt_fd(os.dup(writer.fileno()))
    assert isinstance(dup, PipeWriter)
    dup.close()
    with pytest.raises(InvalidHandleError):
        PipeReader(writer.fileno())
    sock_a, sock_b = socket.socketpair()
    with sock_a, sock_b, pytest.raises(InvalidHandleError):
        adopt_fd(sock_a.fileno())


# --------------------------------------------------------------------------
# Handing ends to other processes (ref 3.16-3.18, the seed's atom hand-off)
# --------------------------------------------------------------------------


def test_inherited_by_subprocess(pipe: tuple[PipeReader, PipeWriter], procs: list) -> None:
    # ref 3.16, 3.17: the child inherits the read end (same descriptor number,
    # told on its command line); the parent closes its write end when done so
    # the child sees end of stream.
    reader, writer = pipe
    code = READ_TO_EOF + "from aether.primitives.pipes import adopt_fd\n"
    code += f"drain(adopt_fd({reader.fileno()}))"
    proc = child(procs, code, pass_fds=(reader.fileno(),))
    reader.close()
    writer.write(PAYLOAD)
    writer.close()
    assert read_line(proc) == expected(PAYLOAD)
    assert proc.wait(timeout=TIMEOUT) == 0


def test_inherited_write_end_keeps_stream_open(procs: list) -> None:
    # ref 3.17: while the child still holds a write end, the reader sees no EOF.
    reader, writer = create_pipe()
    with reader, writer:
        proc = child(procs, "import sys; sys.stdin.readline()", pass_fds=(writer.fileno(),))
        writer.close()
        assert not reader.peek().writers_closed  # the child's copy keeps it open
        send(proc, "bye")
        assert proc.wait(timeout=TIMEOUT) == 0
        assert reader.read(1) == b"" and reader.peek().at_eof


@pytest.mark.parametrize("kind", ["r", "w"])
def test_handover_through_an_atom(runtime_dir: Path, procs: list, kind: str) -> None:
    # The seed: hand a handle to another process through an atom. The child
    # finds the token, takes the descriptor with pidfd_getfd, deletes the atom.
    reader, writer = create_pipe()
    with reader, writer:
        offered = reader if kind == "r" else writer
        code = READ_TO_EOF + (
            "import sys\n"
            "from aether.primitives.pipes import take_end\n"
            "end = take_end(int(sys.stdin.readline()))\n"
            "print('took', end.kind, flush=True)\n"
            "if end.kind == 'r':\n    drain(end)\n"
            "else:\n"
            "    data = bytes(range(256)) * 4096\n"
            "    with end: end.write(data)\n"
            "    print('wrote', flush=True)\n"
        )
        proc = child(procs, code)
        published = publish_end(offered, allow_pid=proc.pid)
        assert PipeToken.parse(published.name).pid == os.getpid()
        send(proc, str(published.atom))
        assert read_line(proc) == f"took {kind}"
        assert published.taken() and published.wait_taken(timeout=TIMEOUT)
        offered.close()  # ref 3.17: our copy must go, or the stream never ends
        if kind == "r":
            writer.write(PAYLOAD)
            writer.close()
            assert read_line(proc) == expected(PAYLOAD)
        else:
            assert reader.read_all() == PAYLOAD  # EOF: the child closed its copy
            assert read_line(proc) == "wrote"
        assert proc.wait(timeout=TIMEOUT) == 0
        with GlobalAtomTable() as table:
            assert len(table) == 0  # the taker consumed the atom


def test_take_end_refuses_stale_tokens(runtime_dir: Path) -> None:
    reader, writer = create_pipe()
    published = publish_end(reader)
    fd = reader.fileno()
    reader.close()
    with pytest.raises(InvalidHandleError):
        take_end(published.atom)  # the fd is closed now
    # Reuse the number for another pipe: the identity check refuses it.
    other_r, other_w = create_pipe()
    with other_r, other_w, writer:
        if other_r.fileno() != fd:
            os.dup2(other_r.fileno(), fd)
        try:
            with pytest.raises(InvalidHandleError, match="another file"):
                take_end(published.atom)
        finally:
            if other_r.fileno() != fd:
                os.close(fd)
    assert published.withdraw() and not published.withdraw()


def test_take_end_of_a_dead_publisher(runtime_dir: Path, procs: list) -> None:
    code = (
        "from aether.primitives.pipes import create_pipe, publish_end\n"
        "r, w = create_pipe()\nprint(publish_end(r).atom, flush=True)\n"
        "r.detach(); w.detach()\n"
    )
    proc = child(procs, code)
    atom = int(read_line(proc))
    assert proc.wait(timeout=TIMEOUT) == 0
    with pytest.raises(NotFoundError):
        take_end(atom)


def test_take_end_needs_a_token(runtime_dir: Path) -> None:
    with GlobalAtomTable() as table:
        atom = table.add("just a name")
        with pytest.raises(InvalidParameterError):
            take_end(atom, table=table)
        with pytest.raises(InvalidParameterError):
            PipeToken.parse("aether.pipe:r:1:2:3:4:nothex")


@pytest.mark.parametrize("kind", ["r", "w"])
def test_handover_through_scm_rights(procs: list, kind: str) -> None:
    # Push: the parent sends a pipe end over a Unix socket to a child.
    parent_sock, child_sock = socket.socketpair()
    reader, writer = create_pipe()
    with parent_sock, reader, writer:
        code = READ_TO_EOF + (
            "import socket\n"
            "from aether.primitives.pipes import receive_end\n"
            f"with socket.socket(fileno={child_sock.fileno()}) as s:\n"
            "    end = receive_end(s)\n"
            "print('got', end.kind, flush=True)\n"
            "if end.kind == 'r':\n    drain(end)\n"
            "else:\n"
            "    with end: end.write(bytes(range(256)) * 4096)\n"
        )
        with child_sock:
            proc = child(procs, code, pass_fds=(child_sock.fileno(),))
        offered = reader if kind == "r" else writer
        send_end(parent_sock, offered)
        assert read_line(proc) == f"got {kind}"
        offered.close()
        if kind == "r":
            writer.write(PAYLOAD)
            writer.close()
            assert read_line(proc) == expected(PAYLOAD)
        else:
            assert reader.read_all() == PAYLOAD
        assert proc.wait(timeout=TIMEOUT) == 0


def test_child_sends_an_end_back(procs: list) -> None:
    # The other direction: a child creates a pipe and pushes its write end to us.
    parent_sock, child_sock = socket.socketpair()
    with parent_sock:
        code = (
            "import socket\n"
            "from aether.primitives.pipes import create_pipe, send_end\n"
            "r, w = create_pipe()\n"
            f"with socket.socket(fileno={child_sock.fileno()}) as s:\n"
            "    send_end(s, w)\n"
            "w.close()\n"
            "with r:\n    print(r.read_all().decode(), flush=True)\n"
        )
        with child_sock:
            proc = child(procs, code, pass_fds=(child_sock.fileno(),))
        with receive_end(parent_sock) as end:
            assert isinstance(end, PipeWriter)
            end.write(b"from the parent")
        assert read_line(proc) == "from the parent"
        assert proc.wait(timeout=TIMEOUT) == 0


def test_receive_end_rejects_bad_messages() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"aether.pipe:r")  # no descriptor
        with pytest.raises(InvalidHandleError):
            receive_end(b)
        r1, w1 = create_pipe()
        with r1, w1:
            send_fds(a, b"aether.pipe:w", [r1.fileno()])  # announced w, sent r
            with pytest.raises(InvalidHandleError):
                receive_end(b)
            fds_before = len(os.listdir("/proc/self/fd"))
            send_fds(a, b"aether.pipe:r", [r1.fileno(), w1.fileno()])  # two fds
            with pytest.raises(Exception):  # noqa: B017 - OSAPIError or InvalidHandleError
                receive_end(b)
            assert len(os.listdir("/proc/self/fd")) == fds_before  # none leaked
        a.close()
        with pytest.raises(PipeBrokenError):
            receive_end(b)
