"""The two ends of an anonymous pipe, each owning exactly one descriptor.

Rules (``win32-ipc-semantics.md`` section 3, item numbers in brackets):

- a pipe is one-way: the reader only reads, the writer only writes [3.1];
- data is a byte stream with no write boundaries [3.5]; ``read`` returns as
  soon as some bytes are there [3.6]; ``write`` returns only when every byte
  is in the pipe, waiting for the reader when it is full [3.7];
- after every write end is closed the reader still gets what was buffered,
  then end of stream (``b""``) [3.8]; writing after every read end is closed
  raises :class:`NoDataError` (ERROR_NO_DATA, what Windows reports) [3.10];
- ``peek`` copies without consuming and never blocks [3.12].

An end closes exactly once: ``close()`` sets the descriptor to -1 before
closing it, so a second close (or ``__del__``) never closes a number that
meanwhile belongs to someone else. An end dropped while open is closed by
``__del__`` with a ``ResourceWarning``.
"""

from __future__ import annotations

import errno
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, Literal, TypeVar

from aether.errors import (
    BrokenResourceError,
    ClosedResourceError,
    InvalidHandleError,
    InvalidParameterError,
    NoDataError,
    OSAPIError,
)
from aether.osapi.pipes import (
    bytes_available,
    get_pipe_size,
    make_pipe,
    peek_bytes,
    peer_closed,
    pipe_access,
    pipe_identity,
    pipe_max_size,
    pipe_read,
    pipe_readinto,
    pipe_write,
    set_pipe_size,
)

DEFAULT_READ_SIZE = 65536

_End = TypeVar("_End", bound="PipeEnd")


def _io_error(exc: OSAPIError, what: str) -> Exception:
    if exc.errno == errno.EBADF:
        return ClosedResourceError(f"{what}: the descriptor was closed")
    return BrokenResourceError(f"{what}: {exc}")


@dataclass(frozen=True, slots=True)
class PipePeek:
    """What :meth:`PipeReader.peek` saw, at one instant.

    Attributes:
        available: bytes waiting in the pipe (``FIONREAD``).
        data: up to the requested number of those bytes, not consumed.
        writers_closed: every write end is closed; once ``available`` is 0
            too, the pipe is at end of stream.
    """

    available: int
    data: bytes
    writers_closed: bool

    @property
    def at_eof(self) -> bool:
        return self.writers_closed and self.available == 0


class PipeEnd:
    """One end of a pipe. Use as a context manager, or call :meth:`close`."""

    kind: ClassVar[Literal["r", "w"]]

    def __init__(self, fd: int) -> None:
        """Take ownership of ``fd``, which must be this kind of pipe end.

        Raises:
            InvalidHandleError: ``fd`` is not a pipe end of this kind.
        """
        try:
            access = pipe_access(fd)
        except OSAPIError as exc:
            raise InvalidHandleError(f"fd {fd} is not a pipe end: {exc}") from None
        if access != self.kind:
            raise InvalidHandleError(f"fd {fd} is the {access!r} end, not {self.kind!r}")
        self._fd = fd

    # -- ownership ---------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def fileno(self) -> int:
        """The descriptor (still owned by this object).

        Raises:
            ClosedResourceError: the end is closed.
        """
        if self._fd < 0:
            raise ClosedResourceError(f"this pipe {self._what} end is closed")
        return self._fd

    def close(self) -> None:
        """Close the descriptor. Idempotent; never raises for a second call."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def detach(self) -> int:
        """Give up ownership: return the descriptor and mark this end closed."""
        fd = self.fileno()
        self._fd = -1
        return fd

    def __enter__(self: _End) -> _End:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            warnings.warn(
                f"unclosed pipe {self._what} end (fd {self._fd})",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self._fd}"
        return f"<{type(self).__name__} {state}>"

    @property
    def _what(self) -> str:
        return "read" if self.kind == "r" else "write"

    # -- properties of the pipe ------------------------------------------------

    @property
    def inheritable(self) -> bool:
        """Whether a child started by ``exec`` keeps this descriptor."""
        return os.get_inheritable(self.fileno())

    @inheritable.setter
    def inheritable(self, value: bool) -> None:
        os.set_inheritable(self.fileno(), value)

    @property
    def buffer_size(self) -> int:
        """The pipe's capacity in bytes (both ends share it)."""
        return get_pipe_size(self.fileno())

    @property
    def identity(self) -> tuple[int, int]:
        """``(device, inode)`` of the pipe, shared by both of its ends."""
        return pipe_identity(self.fileno())

    def peer_closed(self) -> bool:
        """True once every descriptor of the other end is closed."""
        return peer_closed(self.fileno())


class PipeReader(PipeEnd):
    """The read end."""

    kind = "r"

    def read(self, size: int = DEFAULT_READ_SIZE) -> bytes:
        """Block until at least one byte is there; return up to ``size``.

        Returns ``b""`` at end of stream (every write end closed and nothing
        left) [3.8], or when ``size`` is 0.
        """
        if size < 0:
            raise InvalidParameterError(f"read size must be >= 0, not {size}")
        fd = self.fileno()
        if size == 0:
            return b""
        try:
            return pipe_read(fd, size)
        except OSAPIError as exc:
            raise _io_error(exc, "read") from exc

    def readinto(self, buffer: memoryview | bytearray) -> int:
        """Like :meth:`read` into a writable buffer; returns the byte count."""
        view = memoryview(buffer).cast("B")
        fd = self.fileno()
        if not len(view):
            return 0
        try:
            return pipe_readinto(fd, view)
        except OSAPIError as exc:
            raise _io_error(exc, "read") from exc

    def read_all(self) -> bytes:
        """Read until end of stream."""
        return b"".join(iter(self))

    def __iter__(self) -> Iterator[bytes]:
        """Chunks as they arrive, until end of stream."""
        while chunk := self.read():
            yield chunk

    def available(self) -> int:
        """Bytes that a read would get now without waiting (``FIONREAD``)."""
        return bytes_available(self.fileno())

    def peek(self, size: int = 0) -> PipePeek:
        """Report what is waiting without consuming it; never blocks [3.12].

        Args:
            size: how many bytes of data to copy out as well (0: count only).
        """
        if size < 0:
            raise InvalidParameterError(f"peek size must be >= 0, not {size}")
        fd = self.fileno()
        # Order matters: once the writers are seen gone no byte can arrive,
        # so the count and data read after it are final.
        writers_closed = peer_closed(fd)
        available = bytes_available(fd)
        data = peek_bytes(fd, min(size, available)) if size and available else b""
        return PipePeek(available, data, writers_closed)


class PipeWriter(PipeEnd):
    """The write end."""

    kind = "w"

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Write every byte, waiting while the pipe is full [3.7].

        Writes of at most 4096 bytes (``PIPE_BUF``) are atomic with respect
        to other writers.

        Returns:
            ``len(data)``.

        Raises:
            NoDataError: every read end is closed (ERROR_NO_DATA) [3.10];
                the end stays open but the pipe is useless.
            ClosedResourceError: this end is closed.
        """
        view = memoryview(data).cast("B")
        fd = self.fileno()
        total = 0
        while total < len(view):
            try:
                total += pipe_write(fd, view[total:])
            except OSAPIError as exc:
                if exc.errno == errno.EPIPE:
                    raise NoDataError(
                        f"the pipe's read end is closed ({total} of {len(view)} bytes written)"
                    ) from None
                raise _io_error(exc, "write") from exc
        return total


def create_pipe(size: int = 0, inheritable: bool = False) -> tuple[PipeReader, PipeWriter]:
    """Create an anonymous pipe; returns ``(reader, writer)`` [3.1].

    Args:
        size: suggested capacity in bytes; 0 keeps Linux's default (64 KiB,
            where Windows uses 4 KiB) [3.2]. Linux rounds up to a power-of-two
            number of pages (at least one page) and caps unprivileged callers
            at ``/proc/sys/fs/pipe-max-size``; a larger request gets that cap.
            Read the result from ``buffer_size``.
        inheritable: leave both ends open across ``exec`` (Win32's
            ``bInheritHandle``) [3.16]. ``subprocess`` still only passes what
            is listed in ``pass_fds``.

    Raises:
        InvalidParameterError: negative ``size``.
        OSAPIError: out of descriptors or pipe memory.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidParameterError(f"pipe size must be an int >= 0, not {size!r}")
    read_fd, write_fd = make_pipe(cloexec=not inheritable)
    reader, writer = PipeReader(read_fd), PipeWriter(write_fd)
    try:
        if size:
            try:
                set_pipe_size(write_fd, size)
            except OSAPIError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOMEM):
                    raise
                set_pipe_size(write_fd, min(size, pipe_max_size()))
    except BaseException:
        reader.close()
        writer.close()
        raise
    return reader, writer


def adopt_fd(fd: int) -> PipeReader | PipeWriter:
    """Wrap a pipe descriptor this process received (inherited, passed or
    taken), choosing the class from its access mode. Takes ownership.

    Raises:
        InvalidHandleError: ``fd`` is not a pipe end (it is left open).
    """
    try:
        access = pipe_access(fd)
    except OSAPIError as exc:
        raise InvalidHandleError(f"fd {fd} is not a pipe end: {exc}") from None
    return PipeReader(fd) if access == "r" else PipeWriter(fd)
