"""Handing a pipe end to another process.

Windows makes the creator ``DuplicateHandle`` into the other process and
tell it the value "through some other IPC channel"; the seed suggests an
atom. Linux has no push into an uncooperative process, so there are two
ways, one per direction of initiative:

- **pull, through an atom** (:func:`publish_end` / :func:`take_end`): the
  creator adds the global atom ``aether.pipe:<r|w>:<pid>:<fd>:<dev>:<ino>:<nonce>``
  and keeps the end open; the taker reads the name, opens a pidfd for
  ``<pid>`` and copies descriptor ``<fd>`` with ``pidfd_getfd(2)``, checks
  that it is the same pipe (``<dev>:<ino>``, so a reused fd number or pid is
  refused), then deletes the atom, which tells the creator it was taken.
  ``pidfd_getfd`` needs ptrace access to the creator: same uid and
  ``PTRACE_MODE_ATTACH_REALCREDS``; under Yama ``ptrace_scope`` 1 the taker
  must be an ancestor of the creator, or the creator must name it with
  ``PR_SET_PTRACER`` (``publish_end(..., allow_pid=...)`` does so); scope 2
  needs CAP_SYS_PTRACE and scope 3 forbids it.
- **push, over a Unix socket** (:func:`send_end` / :func:`receive_end`):
  ``SCM_RIGHTS`` carries a duplicate to a process already connected.

Inheritance by a child started with ``subprocess`` needs neither: pass the
descriptor in ``pass_fds`` and call :func:`adopt_fd` on it in the child.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Literal

from aether.errors import (
    AccessDeniedError,
    InvalidHandleError,
    InvalidParameterError,
    NotFoundError,
    OSAPIError,
    PipeBrokenError,
)
from aether.osapi import close_fd, pidfd_getfd, pidfd_open, set_ptracer, yama_ptrace_scope
from aether.osapi.fdpass import recv_fds, send_fds
from aether.osapi.pipes import pipe_identity

from ._pipe_ends import PipeReader, PipeWriter, adopt_fd
from .atoms import GlobalAtomTable

TOKEN_PREFIX = "aether.pipe"
_TOKEN_RE = re.compile(
    r"aether\.pipe:(?P<kind>[rw]):(?P<pid>[1-9][0-9]{0,9}):(?P<fd>[0-9]{1,10}):"
    r"(?P<dev>[0-9]{1,20}):(?P<ino>[0-9]{1,20}):(?P<nonce>[0-9a-f]{16})"
)
_SCM_HEADER = {"r": b"aether.pipe:r", "w": b"aether.pipe:w"}


@dataclass(frozen=True, slots=True)
class PipeToken:
    """What the atom's name says: which descriptor of which process."""

    kind: Literal["r", "w"]
    pid: int
    fd: int
    dev: int
    ino: int
    nonce: str

    def __str__(self) -> str:
        return f"{TOKEN_PREFIX}:{self.kind}:{self.pid}:{self.fd}:{self.dev}:{self.ino}:{self.nonce}"

    @classmethod
    def parse(cls, text: str) -> PipeToken:
        """Raises InvalidParameterError unless ``text`` is a well-formed token."""
        match = _TOKEN_RE.fullmatch(text)
        if match is None:
            raise InvalidParameterError(f"{text[:80]!r} is not a pipe token")
        kind: Literal["r", "w"] = "r" if match["kind"] == "r" else "w"
        return cls(
            kind,
            int(match["pid"]),
            int(match["fd"]),
            int(match["dev"]),
            int(match["ino"]),
            match["nonce"],
        )


class PublishedEnd:
    """A pipe end offered through a global atom, until someone takes it.

    The creator must keep its end open until :meth:`wait_taken` says it was
    taken, then close its own copy (otherwise, for a write end, the reader
    never sees end of stream [3.17]).
    """

    def __init__(self, table: GlobalAtomTable, atom: int, token: PipeToken) -> None:
        self.table = table
        self.atom = atom
        self.token = token

    @property
    def name(self) -> str:
        return str(self.token)

    def taken(self) -> bool:
        """True once the taker deleted the atom (the name is unique, so a
        reused atom value cannot be mistaken for ours)."""
        try:
            self.table.find(self.name)
        except NotFoundError:
            return True
        return False

    def wait_taken(self, timeout: float | None = None) -> bool:
        """Wait until taken; False on timeout.

        The table has no change notification, so this polls, backing off
        from 1 ms to 50 ms.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        while not self.taken():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return True

    def withdraw(self) -> bool:
        """Remove the offer if nobody took it; True if it was still there."""
        try:
            self.table.delete(self.atom, name=self.name)
        except InvalidHandleError:
            return False
        return True


def publish_end(
    end: PipeReader | PipeWriter,
    *,
    table: GlobalAtomTable | None = None,
    allow_pid: int | None = None,
) -> PublishedEnd:
    """Offer ``end`` to another process of the same user as a global atom.

    Args:
        table: the global table (default: :meth:`GlobalAtomTable.default`).
        allow_pid: the process that will take it; under Yama scope 1 it is
            made our ptracer (``PR_SET_PTRACER``) so that ``pidfd_getfd``
            works although it is not our ancestor.
    """
    table = GlobalAtomTable.default() if table is None else table
    fd = end.fileno()
    dev, ino = pipe_identity(fd)
    if allow_pid is not None and yama_ptrace_scope() == 1:
        set_ptracer(allow_pid)
    token = PipeToken(end.kind, os.getpid(), fd, dev, ino, secrets.token_hex(8))
    atom = table.add(str(token))
    return PublishedEnd(table, atom, token)


def take_end(
    atom: int, *, table: GlobalAtomTable | None = None, consume: bool = True
) -> PipeReader | PipeWriter:
    """Take the pipe end published as ``atom`` into this process.

    Args:
        consume: delete the atom afterwards (tells the creator it was taken).

    Raises:
        InvalidHandleError: no such atom, or the descriptor is no longer the
            published pipe (closed, or its number reused).
        InvalidParameterError: the atom does not name a pipe token.
        NotFoundError: the publishing process is gone.
        AccessDeniedError: no ptrace access to the publisher (other user,
            Yama scope); see the module docstring.
    """
    table = GlobalAtomTable.default() if table is None else table
    name = table.get_name(atom)
    token = PipeToken.parse(name)
    try:
        pidfd = pidfd_open(token.pid)
    except OSAPIError as exc:
        if exc.errno == errno.ESRCH:
            raise NotFoundError(f"process {token.pid} that published the pipe is gone") from None
        raise
    try:
        try:
            fd = pidfd_getfd(pidfd, token.fd)
        except OSAPIError as exc:
            if exc.errno == errno.EPERM:
                raise AccessDeniedError(
                    f"pidfd_getfd on process {token.pid} refused: needs ptrace access "
                    f"(same uid; Yama ptrace_scope {yama_ptrace_scope()})"
                ) from None
            if exc.errno == errno.EBADF:
                raise InvalidHandleError(
                    f"process {token.pid} no longer has fd {token.fd} open"
                ) from None
            if exc.errno == errno.ESRCH:
                raise NotFoundError(f"process {token.pid} exited") from None
            raise
    finally:
        close_fd(pidfd)
    try:
        if pipe_identity(fd) != (token.dev, token.ino):
            raise InvalidHandleError(f"fd {token.fd} of process {token.pid} is another file now")
        end = adopt_fd(fd)
        if end.kind != token.kind:
            end.detach()
            raise InvalidHandleError(f"fd {token.fd} is not the {token.kind!r} end")
    except BaseException:
        close_fd(fd)
        raise
    if consume:
        try:
            table.delete(atom, name=name)
        except InvalidHandleError:
            pass  # withdrawn or consumed meanwhile; we hold the end anyway
    return end


def send_end(sock: socket.socket, end: PipeReader | PipeWriter) -> None:
    """Send a duplicate of ``end`` over a connected Unix socket (``SCM_RIGHTS``).

    The caller keeps (and must still close) its own copy.
    """
    send_fds(sock, _SCM_HEADER[end.kind], [end.fileno()])


def receive_end(sock: socket.socket) -> PipeReader | PipeWriter:
    """Receive one pipe end sent with :func:`send_end`.

    Raises:
        PipeBrokenError: the peer closed the socket first.
        InvalidHandleError: the message carried no descriptor, more than one,
            or one that is not the announced pipe end (all are closed).
    """
    data, fds = recv_fds(sock, 64, 1)
    if not data and not fds:
        raise PipeBrokenError("the sending socket closed before a pipe end arrived")
    if len(fds) != 1 or data not in _SCM_HEADER.values():
        for fd in fds:
            close_fd(fd)
        raise InvalidHandleError(f"expected one pipe end, got {len(fds)} fds and {data[:32]!r}")
    try:
        end = adopt_fd(fds[0])
    except BaseException:
        close_fd(fds[0])
        raise
    if _SCM_HEADER[end.kind] != data:
        end.close()
        raise InvalidHandleError("the received descriptor is not the announced pipe end")
    return end
