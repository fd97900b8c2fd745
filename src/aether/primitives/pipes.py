"""Anonymous pipes (seed 004): one-way byte streams between processes.

Example::

    >>> from aether.primitives.pipes import create_pipe
    >>> reader, writer = create_pipe()
    >>> with reader, writer:
    ...     writer.write(b"hello")
    ...     reader.peek(2)
    ...     reader.read(100)
    5
    PipePeek(available=5, data=b'he', writers_closed=False)
    b'hello'

Handing an end to another process: :func:`publish_end` / :func:`take_end`
(through a global atom and ``pidfd_getfd``), :func:`send_end` /
:func:`receive_end` (``SCM_RIGHTS``), or ``subprocess`` with ``pass_fds``
plus :func:`adopt_fd` in the child. See ``docs/primitives.md``.
"""

from __future__ import annotations

from ._pipe_ends import (
    DEFAULT_READ_SIZE,
    PipeEnd,
    PipePeek,
    PipeReader,
    PipeWriter,
    adopt_fd,
    create_pipe,
)
from ._pipe_handover import (
    TOKEN_PREFIX,
    PipeToken,
    PublishedEnd,
    publish_end,
    receive_end,
    send_end,
    take_end,
)

__all__ = [
    "DEFAULT_READ_SIZE",
    "TOKEN_PREFIX",
    "PipeEnd",
    "PipePeek",
    "PipeReader",
    "PipeToken",
    "PipeWriter",
    "PublishedEnd",
    "adopt_fd",
    "create_pipe",
    "publish_end",
    "receive_end",
    "send_end",
    "take_end",
]
