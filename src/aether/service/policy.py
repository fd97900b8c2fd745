"""Who may call what, and the limits that keep one client from hurting others.

Limits follow dbus-daemon's system bus in spirit (``reference/threat-model.md``
section 2.1): bounded sessions in total and per uid, bounded half-open
connections, a handshake deadline, bounded block and payload sizes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from aether.schema import OperationSpec


@dataclass(frozen=True)
class Caller:
    """The verified identity of a session's client (from the kernel)."""

    pid: int
    uid: int
    gid: int
    groups: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Policy:
    """Authorization per operation.

    Unprivileged operations are open to every caller who can connect (the
    socket's mode decides who can). Privileged operations are default-deny:
    allowed for ``privileged_uids`` (by default root and the service's own
    uid) and members of ``privileged_groups``. ``rules`` overrides per
    operation name with an explicit set of uids (``"*"`` for everyone).
    """

    privileged_uids: frozenset[int] = field(
        default_factory=lambda: frozenset({0, os.geteuid()})
    )
    privileged_groups: frozenset[int] = frozenset()
    rules: dict[str, frozenset[int] | str] = field(default_factory=dict)

    def allows(self, spec: OperationSpec, caller: Caller) -> bool:
        rule = self.rules.get(spec.name)
        if rule == "*":
            return True
        if isinstance(rule, frozenset):
            return caller.uid in rule
        if not spec.privileged:
            return True
        if caller.uid in self.privileged_uids:
            return True
        return bool(self.privileged_groups & ({caller.gid} | caller.groups))


@dataclass(frozen=True)
class Limits:
    """Service limits; a client over one gets LIMITS_EXCEEDED, others go on."""

    max_sessions: int = 2048
    max_sessions_per_uid: int = 256
    max_half_open: int = 256
    max_half_open_per_uid: int = 64
    handshake_timeout: float = 5.0
    idle_timeout: float | None = None
    max_block_size: int = 16 * 1024 * 1024
    max_payload: int = 16 * 1024 * 1024
    progress_interval: float = 0.05
    shutdown_grace: float = 5.0
    socket_mode: int | None = None  # default: 0666 for system, 0600 for user services
    # Seconds a session's thread polls its socket without sleeping after an
    # operation, while it is the service's only session: back-to-back calls
    # then cost no wake-up. 0 disables it.
    spin: float = 0.0003
    # A client whose queue stays full this long (it does not read) is cut off.
    send_timeout: float = 5.0
    # EXECUTEs answered REJECTED_BUSY during one operation before the session ends.
    max_busy_replies: int = 64
    # Handler threads per uid, counted until they really end (a handler stuck
    # in I/O keeps its slot after its session is gone).
    max_workers_per_uid: int = 64
    # Bytes of mapping-transport regions (rings) all sessions of one uid may
    # hold at once: without it, 256 sessions with 32 MiB rings each could pin
    # 8 GiB of the service's shared memory. MAP_MODE over it: LIMITS_EXCEEDED.
    # None: 256 MiB, or four sessions with the rings max_payload needs if
    # that is more (Service.ring_budget).
    max_ring_bytes_per_uid: int | None = None
    # Seconds between handing the C allocator's free pages back to the kernel
    # (osapi.trim_heap): freed memory between live blocks of the sessions'
    # and workers' arenas stays resident otherwise, and adds up over hours.
    # 0 disables it.
    heap_trim_interval: float = 30.0
    # Seconds a thread may hold the GIL while another waits for it
    # (sys.setswitchinterval), set for the service's process while it serves.
    # Python's 5 ms default lets one busy session delay every other session's
    # reply by 5 ms at a time: `aether bench load`'s paced p99 on the memory
    # transport was 19-65 ms with it, 4-5 ms with 0.5 ms. None: Python's.
    gil_switch_interval: float | None = 0.0005
    # Keep the service's threads on one CPU while it serves (moved to an
    # idler one when other tasks crowd it; long handlers may use every CPU):
    # with the GIL, threads spread over CPUs queue for it and serve 16
    # clients at half the rate or less (service/placement.py). Only where
    # serve() runs in the process's main thread. False: the kernel places them.
    one_cpu: bool = True
