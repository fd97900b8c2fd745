"""Processes of a load run: forked clients and the service's vital signs.

Clients are forked from the harness, not exec'd: the harness has already
imported Aether, so a client is ready in milliseconds and shares its pages
with the parent; and a client that drops to another uid can go on running
Python (pyenv's interpreter under /root is not readable by other uids, so an
exec would fail). The harness talks to each client over two pipes, one JSON
line per message.

Every process the harness starts is remembered by pid and killed by pid when
the run ends, however it ends (Ctrl-C included).
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aether import osapi
from aether.errors import AetherError


class ChildLink:
    """The child's side: report lines to the parent, wait for its word."""

    def __init__(self, rfd: int, wfd: int) -> None:
        self._rfd = rfd
        self._wfd = wfd
        self._buf = b""

    def send(self, **message: Any) -> None:
        os.write(self._wfd, json.dumps(message).encode() + b"\n")

    def stop_requested(self) -> bool:
        """True once the parent has written anything (or is gone): checked
        between calls, without waiting."""
        if self._buf:
            return True
        ready, _, _ = select.select([self._rfd], [], [], 0)
        return bool(ready)

    def wait(self) -> dict[str, Any]:
        """The parent's next message; exits quietly if the parent is gone."""
        while b"\n" not in self._buf:
            chunk = os.read(self._rfd, 4096)
            if not chunk:
                os._exit(0)  # the harness ended: so do we
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        result: dict[str, Any] = json.loads(line)
        return result


_STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


class ForkedChild:
    """A forked child running ``body(link)``; its exit code is ``body``'s
    return value (0 if None), 70 if it raised."""

    def __init__(self, body: Callable[[ChildLink], int | None], *,
                 uid: int | None = None) -> None:
        to_child_r, to_child_w = os.pipe2(os.O_CLOEXEC)
        from_child_r, from_child_w = os.pipe2(os.O_CLOEXEC)
        sys.stdout.flush()
        sys.stderr.flush()
        # Ctrl-C during fork() would be lost: Python runs its handler in the
        # parent's after-fork hooks (logging's lock release), where exceptions
        # are printed and dropped, and the harness went on as if never asked
        # to stop. Blocked, the signal waits for the unblock below.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
            raise
        if pid == 0:  # pragma: no cover - runs in the child
            code = 70
            try:
                os.close(to_child_w)
                os.close(from_child_r)
                _close_siblings_fds()
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
                if uid is not None:
                    osapi.drop_privileges(uid)
                    # A uid change leaves the process non-dumpable; an ordinary
                    # user's process is dumpable (the memory transport needs it).
                    osapi.set_dumpable(True)
                link = ChildLink(to_child_r, from_child_w)
                code = body(link) or 0
            except BaseException:
                try:
                    os.write(2, traceback.format_exc().encode())
                except OSError:
                    pass
            finally:
                os._exit(code)
        try:
            os.close(to_child_r)
            os.close(from_child_w)
            self.pid = pid
            self.pidfd = osapi.pidfd_open(pid)
            self._to = to_child_w
            self._from = from_child_r
            _parent_fds.update((self._to, self._from, self.pidfd))
        finally:
            try:  # a Ctrl-C that came meanwhile is raised here...
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
            except BaseException:
                # ...with this child ended, since no one else knows of it yet.
                # Our own unreaped child: its pid cannot name another process.
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                for fd in (to_child_w, from_child_r, getattr(self, "pidfd", -1)):
                    _parent_fds.discard(fd)
                    if fd >= 0:
                        os.close(fd)
                raise
        self._buf = b""
        self.returncode: int | None = None

    def send(self, **message: Any) -> None:
        if self._to < 0:
            return  # reaped (killed on Ctrl-C, say): nothing to tell it
        try:
            os.write(self._to, json.dumps(message).encode() + b"\n")
        except BrokenPipeError:
            pass

    def read(self, timeout: float) -> dict[str, Any] | None:
        """The child's next message, or None if it exited or stayed silent."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self._from], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(self._from, 65536)
            if not chunk:
                return None
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        result: dict[str, Any] = json.loads(line)
        return result

    def poll(self) -> int | None:
        """The exit code once the child has exited (reaped here), else None."""
        if self.returncode is None and osapi.wait_pidfd(self.pidfd, 0):
            self._reap()
        return self.returncode

    def wait(self, timeout: float) -> int | None:
        if self.returncode is None and osapi.wait_pidfd(self.pidfd, timeout):
            self._reap()
        return self.returncode

    def _reap(self) -> None:
        _, status = os.waitpid(self.pid, 0)
        self.returncode = os.waitstatus_to_exitcode(status)
        self._close_fds()

    def kill(self) -> None:
        """SIGKILL this child (by its pidfd: never another process that reused
        the pid) and reap it."""
        if self.returncode is None:
            try:
                osapi.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except AetherError:
                pass
            osapi.wait_pidfd(self.pidfd, 10)
            self._reap()

    def _close_fds(self) -> None:
        for fd in (self._to, self._from, self.pidfd):
            _parent_fds.discard(fd)
            try:
                os.close(fd)
            except OSError:
                pass
        self._to = self._from = self.pidfd = -1


# The harness's own ends of every child's pipes and pidfd: plain descriptors
# (no Python object would close them again later), closed in each new child
# so that only the harness holds them. A child holding a sibling's pipe end
# would keep that sibling from seeing the harness go away.
_parent_fds: set[int] = set()


def _close_siblings_fds() -> None:
    for fd in list(_parent_fds):
        try:
            os.close(fd)
        except OSError:
            pass
    _parent_fds.clear()


class ChildSet:
    """Every child of a run, killed by pid when the run ends."""

    def __init__(self) -> None:
        self.children: list[ForkedChild] = []

    def fork(self, body: Callable[[ChildLink], int | None], **kw: Any) -> ForkedChild:
        child = ForkedChild(body, **kw)
        self.children.append(child)
        return child

    def live(self) -> list[ForkedChild]:
        return [c for c in self.children if c.poll() is None]

    def wait_all(self, timeout: float) -> bool:
        """Wait for every child to exit; False if some are still running."""
        deadline = time.monotonic() + timeout
        for child in self.children:
            if child.wait(max(0.0, deadline - time.monotonic())) is None:
                return False
        return True

    def kill_all(self) -> None:
        for child in self.children:
            child.kill()

    def __enter__(self) -> ChildSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill_all()


@dataclass(frozen=True)
class Vitals:
    """One sample of the service process."""

    t: float  # monotonic seconds
    rss_kib: int
    fds: int
    threads: int
    # Of the RSS: private anonymous memory (the heaps, stacks, arenas: where a
    # leak shows) and shared memory (the mapping transport's session rings,
    # which come and go with the sessions); the rest is file pages.
    anon_kib: int = 0
    shmem_kib: int = 0


def vitals(pid: int) -> Vitals | None:
    """RSS, open descriptors and threads of ``pid`` (None once it is gone)."""
    fields = {"VmRSS:": 0, "Threads:": 0, "RssAnon:": 0, "RssShmem:": 0}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                key, _, rest = line.partition("\t")
                if key in fields:
                    fields[key] = int(rest.split()[0])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError, IndexError):
        return None
    return Vitals(time.monotonic(), fields["VmRSS:"], fds, fields["Threads:"],
                  fields["RssAnon:"], fields["RssShmem:"])


def settle(pid: int, baseline: Vitals, timeout: float) -> Vitals | None:
    """Sample until the service's descriptors and threads are back to
    ``baseline`` (its sessions have ended) or ``timeout`` runs out; the last
    sample either way."""
    deadline = time.monotonic() + timeout
    pidfd = osapi.pidfd_open(pid)
    try:
        while True:
            now = vitals(pid)
            if now is None or (now.fds <= baseline.fds and now.threads <= baseline.threads):
                return now
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return now
            if osapi.wait_pidfd(pidfd, min(0.02, remaining)):
                return vitals(pid)
    finally:
        os.close(pidfd)
