"""``aether pipe``: the seed's anonymous-pipe scenario, step by step.

The parent creates a pipe and starts a child. It hands the child the read
end -- by default through a global atom, as the seed suggests (the child
finds the token and copies the descriptor with ``pidfd_getfd``), or over a
Unix socket (``SCM_RIGHTS``), or by inheritance (``pass_fds``) -- then closes
its own copy, streams data, and closes the write end; the child reads to end
of stream and reports a checksum that the parent compares.

The child half runs as ``python -m aether.cli.pipe_cmd --child MODE`` and
talks to the parent with JSON lines on stdout.
"""

from __future__ import annotations

import hashlib
import json
import selectors
import socket
import subprocess
import sys
import time
from typing import IO, Any

import click

from aether.errors import BrokenResourceError
from aether.primitives.pipes import (
    PipeReader,
    PipeWriter,
    PublishedEnd,
    adopt_fd,
    create_pipe,
    publish_end,
    receive_end,
    send_end,
    take_end,
)

from .errors_cli import handle_errors

CHILD_TIMEOUT = 30.0
MODES = ("atom", "scm", "inherit")


class _Demo:
    """Collects the events and prints them as they happen."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.events: list[dict[str, Any]] = []

    def step(self, who: str, text: str, **fields: Any) -> None:
        self.events.append({"who": who, "what": text, **fields})
        if not self.as_json:
            click.echo(f"[{who:<6}] {text}")


def _read_event(proc: subprocess.Popen[str], deadline: float) -> dict[str, Any]:
    """One JSON line from the child, or BrokenResourceError if it dies or stalls."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(max(0.0, deadline - time.monotonic())):
            raise BrokenResourceError("the child did not answer in time")
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        err = proc.stderr.read() if proc.stderr is not None else ""
        raise BrokenResourceError(f"the child exited ({proc.returncode}): {err.strip()[-500:]}")
    try:
        event: dict[str, Any] = json.loads(line)
    except ValueError:
        raise BrokenResourceError(f"the child said something unexpected: {line[:200]!r}") from None
    return event


def _start_child(mode: str, pass_fds: tuple[int, ...], extra: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "aether.cli.pipe_cmd", "--child", mode, *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        pass_fds=pass_fds,
    )


def _payload(chunk: int) -> bytes:
    """One write's worth of a recognisable byte pattern."""
    return (bytes(range(256)) * (chunk // 256 + 1))[:chunk]


@click.command(name="pipe")
@click.option(
    "--via",
    type=click.Choice(MODES),
    default="atom",
    show_default=True,
    help="How the child gets the read end.",
)
@click.option(
    "--bytes",
    "total",
    type=click.IntRange(0, 1 << 36),
    default=8 << 20,
    show_default=True,
    help="How much data to stream.",
)
@click.option(
    "--chunk",
    type=click.IntRange(1, 1 << 24),
    default=65536,
    show_default=True,
    help="Bytes per write.",
)
@click.option(
    "--size",
    type=click.IntRange(0, 1 << 30),
    default=0,
    show_default=True,
    help="Suggested pipe buffer size (0: system default).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end.")
@handle_errors
def pipe(via: str, total: int, chunk: int, size: int, as_json: bool) -> None:
    """Create a pipe, hand its read end to a child and stream data through it."""
    demo = _Demo(as_json)
    reader, writer = create_pipe(size)
    demo.step(
        "parent",
        f"created a pipe: read fd {reader.fileno()}, write fd "
        f"{writer.fileno()}, buffer {writer.buffer_size} bytes",
        buffer_size=writer.buffer_size,
    )
    parent_sock: socket.socket | None = None
    published: PublishedEnd | None = None
    with reader, writer:
        if via == "atom":
            proc = _start_child("atom", (), [])
            demo.step("parent", f"started child pid {proc.pid}", pid=proc.pid)
            published = publish_end(reader, allow_pid=proc.pid)
            demo.step(
                "parent",
                f"published the read end as atom 0x{published.atom:04X} {published.name!r}",
                atom=published.atom,
                token=published.name,
            )
            _send_line(proc.stdin, str(published.atom))
        elif via == "scm":
            parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            with child_sock:
                proc = _start_child("scm", (child_sock.fileno(),), [str(child_sock.fileno())])
            demo.step(
                "parent",
                f"started child pid {proc.pid} with one end of a socket pair",
                pid=proc.pid,
            )
            send_end(parent_sock, reader)
            demo.step("parent", "sent the read end with SCM_RIGHTS")
        else:
            proc = _start_child("inherit", (reader.fileno(),), [str(reader.fileno())])
            demo.step(
                "parent",
                f"started child pid {proc.pid} inheriting fd {reader.fileno()}",
                pid=proc.pid,
            )
        try:
            _stream(demo, proc, reader, writer, total, chunk)
        finally:
            if parent_sock is not None:
                parent_sock.close()
            if published is not None:
                published.withdraw()  # no-op once taken; never leave a stale offer
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=CHILD_TIMEOUT)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
    if as_json:
        click.echo(json.dumps({"ok": True, "via": via, "events": demo.events}))


def _send_line(stream: IO[str] | None, text: str) -> None:
    assert stream is not None
    stream.write(text + "\n")
    stream.flush()


def _stream(
    demo: _Demo,
    proc: subprocess.Popen[str],
    reader: PipeReader,
    writer: PipeWriter,
    total: int,
    chunk: int,
) -> None:
    deadline = time.monotonic() + CHILD_TIMEOUT
    took = _read_event(proc, deadline)
    demo.step("child", took["what"], **{k: v for k, v in took.items() if k != "what"})
    reader.close()
    demo.step("parent", "closed its own copy of the read end")
    block = _payload(chunk)
    digest = hashlib.sha256()
    sent = 0
    started = time.perf_counter()
    view = memoryview(block)
    while sent < total:
        piece = view[: min(chunk, total - sent)]
        writer.write(piece)
        digest.update(piece)
        sent += len(piece)
    writer.close()
    elapsed = time.perf_counter() - started
    demo.step(
        "parent",
        f"wrote {sent} bytes in {elapsed:.3f} s and closed the write end",
        bytes=sent,
        seconds=round(elapsed, 6),
    )
    done = _read_event(proc, time.monotonic() + CHILD_TIMEOUT)
    demo.step("child", done["what"], **{k: v for k, v in done.items() if k != "what"})
    proc.wait(timeout=CHILD_TIMEOUT)
    if done.get("bytes") != sent or done.get("sha256") != digest.hexdigest():
        raise BrokenResourceError("the child received different data")
    demo.step(
        "parent",
        "checksums match",
        sha256=digest.hexdigest(),
        mib_per_s=round(sent / max(elapsed, 1e-9) / (1 << 20), 1),
    )


# --------------------------------------------------------------------------
# The child half
# --------------------------------------------------------------------------


def _emit(what: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"what": what, **fields}) + "\n")
    sys.stdout.flush()


def _child(mode: str, args: list[str]) -> int:
    if mode == "atom":
        atom = int(sys.stdin.readline())
        end = take_end(atom)
        _emit(
            f"found atom 0x{atom:04X} and took fd {end.fileno()} with pidfd_getfd",
            atom=atom,
            fd=end.fileno(),
        )
    elif mode == "scm":
        with socket.socket(fileno=int(args[0])) as sock:
            end = receive_end(sock)
        _emit(f"received fd {end.fileno()} over SCM_RIGHTS", fd=end.fileno())
    else:
        end = adopt_fd(int(args[0]))
        _emit(f"adopted inherited fd {end.fileno()}", fd=end.fileno())
    if not isinstance(end, PipeReader):
        end.close()
        _emit("got a write end, expected the read end")
        return 1
    digest = hashlib.sha256()
    count = 0
    with end:
        for data in end:
            digest.update(data)
            count += len(data)
    _emit(f"read {count} bytes, then end of stream", bytes=count, sha256=digest.hexdigest())
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "--child" and argv[1] in MODES:
        return _child(argv[1], argv[2:])
    print("usage: python -m aether.cli.pipe_cmd --child {atom,scm,inherit} [FD]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
