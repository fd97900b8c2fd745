"""The service ``aether bench load`` runs as a subprocess
(``aether service run aether.bench.load_service:service``).

Limits are raised above the defaults so that 1,024 sessions of 8 uids and 64
busy clients fit (the defaults stop a uid at 256 sessions). With
``$AETHER_LOAD_JOURNAL`` naming a directory, every operation that returns a
result appends ``(client, seq)`` to ``journal-<pid>.bin`` there just before it
returns: the service's own record of what it committed. It is written with
one ``write`` on an ``O_APPEND`` descriptor, so it survives a SIGKILL of the
service (the data is in the page cache) and costs the service no memory.
"""

from __future__ import annotations

import os
import struct
import sys
import threading

import aether
from aether import osapi
from aether.service import Limits, OperationContext

from .load_schema import Heap, LoadEcho, LoadFail, LoadHeap, LoadWork, Reply, schema

ENV_JOURNAL = "AETHER_LOAD_JOURNAL"
JOURNAL = struct.Struct("<II")  # client, seq

LIMITS = Limits(
    max_sessions=4096,
    max_sessions_per_uid=1024,
    max_half_open=512,
    max_half_open_per_uid=256,
    max_workers_per_uid=256,
    socket_mode=0o666,
)

service = aether.Service("aether-load", schema=schema, limits=LIMITS)


def _open_journal() -> int | None:
    directory = os.environ.get(ENV_JOURNAL)
    if not directory:
        return None
    path = os.path.join(directory, f"journal-{os.getpid()}.bin")
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)


# Opened before the service is ready, so the service's descriptor count at
# READY already includes it (leak checks compare with that count).
_journal_fd = _open_journal()


def _commit(client: int, seq: int) -> None:
    if _journal_fd is not None:
        os.write(_journal_fd, JOURNAL.pack(client & 0xFFFFFFFF, seq & 0xFFFFFFFF))


@service.handler(LoadEcho, inline=True)
def echo(params: LoadEcho, ctx: OperationContext) -> Reply:
    _commit(params.client, params.seq)
    return Reply(client=params.client, seq=params.seq, data=params.data)


@service.handler(LoadWork)
def work(params: LoadWork, ctx: OperationContext) -> Reply:
    for i in range(params.steps):
        if ctx.wait_cancelled(params.delay):
            raise aether.Cancelled("cancelled")
        ctx.progress(i + 1, params.steps, f"step {i + 1}")
    _commit(params.client, params.seq)
    return Reply(client=params.client, seq=params.seq, steps=params.steps)


@service.handler(LoadFail, inline=True)
def fail(params: LoadFail, ctx: OperationContext) -> None:
    raise aether.OperationFailed("as requested", seq=params.seq)


@service.handler(LoadHeap)
def heap(params: LoadHeap, ctx: OperationContext) -> Heap:
    # Not gc.get_objects(): the list it returns holds every live frame for a
    # moment, and with it another session's view of its result buffer.
    stats = osapi.malloc_stats()
    return Heap(blocks=sys.getallocatedblocks(), threads=threading.active_count(),
                malloc_in_use=stats.in_use_bytes if stats else 0,
                malloc_free=stats.free_bytes if stats else 0,
                malloc_mapped=stats.mapped_bytes if stats else 0)
