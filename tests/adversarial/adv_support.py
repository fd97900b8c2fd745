"""Helpers of the adversarial suite (issue 7) that are not fixtures.

- :class:`Forked`: a child made by ``fork()`` without ``exec`` (pyenv's
  Python under /root is 0700, so a child that drops to another uid could not
  exec it), talking JSON over a ``SOCK_SEQPACKET`` pair that also carries
  descriptors (``SCM_RIGHTS``) both ways.
- :func:`service_footprint`: VmRSS, open fds and threads of a process from
  ``/proc``, for the "service memory and fds stay bounded" checks.
- :func:`take_pid`: arrange for the next process forked to get a given pid
  (``/proc/sys/kernel/ns_last_pid``), to stage pid reuse for real.

The hostile suite's helpers (``rawpeer``, ``hostile_support``) are reused by
import; ``conftest.py`` puts ``tests/hostile`` on ``sys.path``.
"""

from __future__ import annotations

import errno
import json
import os
import select
import shutil
import signal
import socket
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hostile_support import Svc
from rawpeer import RawPeer

from aether import osapi, wire
from aether.osapi import pidfd_open, wait_pidfd
from aether.osapi.fdpass import recv_fds, send_fds
from aether.transport.mapping import MappingClientSide
from aether.wire import FrameKind, messages as m

HERE = Path(__file__).resolve().parent
HOSTILE = HERE.parent / "hostile"
NOBODY = 65534
ATTACKER = 65533  # a second unprivileged uid, distinct from the victim's


class Forked:
    """``body(chan)`` in a forked child; the parent talks to it over ``chan``.

    The child ends with ``os._exit`` whatever happens (never returns into
    pytest) and has an ``alarm`` safety net, so a broken test cannot leave
    it behind. ``result()`` waits for its last message and reaps it.
    """

    def __init__(self, body: Callable[[Channel], Any], *, alarm: int = 60) -> None:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # the child: never return from here
            code = 0
            try:
                parent_end.close()
                signal.signal(signal.SIGALRM, signal.SIG_DFL)
                signal.alarm(alarm)
                chan = Channel(child_end)
                try:
                    chan.send({"done": True, "value": body(chan)})
                except BaseException as exc:  # reported to the parent, which fails the test
                    code = 1
                    chan.send({"done": True, "error": f"{type(exc).__name__}: {exc}",
                               "trace": traceback.format_exc()})
            finally:
                os._exit(code)
        child_end.close()
        self.pid = pid
        self.chan = Channel(parent_end)
        self.pidfd = pidfd_open(pid)
        self.reaped = False

    def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        msg = self.chan.recv(timeout)
        if msg.get("done") and "error" in msg:
            raise AssertionError(f"forked child failed: {msg['error']}\n{msg['trace']}")
        return msg

    def send(self, **fields: Any) -> None:
        self.chan.send(fields)

    def result(self, timeout: float = 30.0) -> Any:
        """The body's return value (AssertionError with its traceback if it raised)."""
        while True:
            msg = self.recv(timeout)
            if msg.get("done"):
                self.reap(timeout)
                return msg["value"]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if not self.reaped:
            os.kill(self.pid, sig)

    def reap(self, timeout: float = 10.0) -> int:
        """Wait for the child to end (killing it past ``timeout``); its status."""
        if self.reaped:
            return 0
        if not wait_pidfd(self.pidfd, timeout):
            os.kill(self.pid, signal.SIGKILL)
        _, status = os.waitpid(self.pid, 0)
        self.reaped = True
        os.close(self.pidfd)
        return status

    def close(self) -> None:
        if not self.reaped:
            self.kill()
            self.reap()
        self.chan.close()


def open_service(target: str, name: str, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = (), cls: type[Svc] = Svc) -> Iterator[Svc]:
    """A service other uids can reach: 0755 directory, socket 0666."""
    directory = Path(tempfile.mkdtemp(prefix=f"aether-adv-{name}-"))
    os.chmod(directory, 0o755)
    service = cls(target, directory / f"{name}.ctl", env=env, args=("--mode", "0666", *args))
    service.start()
    try:
        yield service
    finally:
        service.stop()
        shutil.rmtree(directory, ignore_errors=True)


class Channel:
    """JSON messages (and descriptors) over one end of a SEQPACKET pair."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fds: list[int] = []  # descriptors received, oldest first

    def send(self, msg: dict[str, Any], fds: tuple[int, ...] = ()) -> None:
        data = json.dumps(msg).encode()
        if fds:
            send_fds(self.sock, data, list(fds))
        else:
            self.sock.sendall(data)

    def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            raise AssertionError(f"no message from the other process within {timeout} s")
        try:
            data, fds = recv_fds(self.sock, 1 << 20, 8)
        except OSError as exc:
            # The other side exited with a message of ours unread: the kernel
            # reports ECONNRESET once, ahead of what it sent before exiting.
            if exc.errno != errno.ECONNRESET:
                raise
            data, fds = recv_fds(self.sock, 1 << 20, 8)
        self.fds.extend(fds)
        if not data:
            raise AssertionError("the other process closed the channel")
        msg: dict[str, Any] = json.loads(data)
        return msg

    def close(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds.clear()
        self.sock.close()


def footprint(pid: int) -> dict[str, int]:
    """VmRSS (KiB), open descriptors and threads of ``pid``, from /proc."""
    out = {"fds": len(os.listdir(f"/proc/{pid}/fd"))}
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key == "VmRSS":
                out["rss_kib"] = int(value.split()[0])
            elif key == "Threads":
                out["threads"] = int(value.split()[0])
    return out


NS_LAST_PID = "/proc/sys/kernel/ns_last_pid"


def can_choose_pids() -> bool:
    try:
        with open(NS_LAST_PID, "r+", encoding="ascii"):
            return True
    except OSError:
        return False


def take_pid(pid: int, body: Callable[[Channel], Any], attempts: int = 50) -> Forked | None:
    """Fork ``body`` so that the child gets ``pid`` (a pid that was freed).

    Writes ``pid - 1`` to ns_last_pid (the CRIU interface; root in the pid
    namespace's owner) right before ``fork``. Other processes on the machine
    may take the pid first; then the wrong child is killed and it retries.
    None if the pid could not be had.
    """
    for _ in range(attempts):
        with open(NS_LAST_PID, "w", encoding="ascii") as fh:
            fh.write(str(pid - 1))
        child = Forked(body)
        if child.pid == pid:
            return child
        child.close()
    return None


# -- a raw client of the mapping transport ------------------------------------------------
ECHO = 0x0003
RING = 4096


class MappedPeer:
    """A raw mapping-transport client: control socket plus the mapped rings."""

    def __init__(self, path, ring_size: int = RING) -> None:
        self.peer = RawPeer(path)
        self.peer.hello()
        self.peer.send(m.MapMode(ring_size))
        ready, _, _ = select.select([self.peer.sock], [], [], 5.0)
        assert ready, "no MAP_READY"
        data, fds = recv_fds(self.peer.sock, 4096, 3)
        ready_msg = wire.decode(data)
        assert isinstance(ready_msg, m.MapReady), ready_msg
        self.side = MappingClientSide(fds, ready_msg.ring_size, ready_msg.region_size)
        self.peer.send(m.TestVerified(0))
        self.ctl = self.side.ctl
        self.requests = self.side.region.request_bytes

    def wake(self) -> None:
        osapi.eventfd_signal(self.side.peer_efd)  # always: the service may be asleep

    def execute(self, op_id: int, payload: bytes, op_code: int = ECHO) -> None:
        self.side.requests.put(int(FrameKind.EXECUTE), op_id, op_code, payload)
        self.wake()

    def reply(self, timeout: float = 3.0) -> tuple[int, int, int, bytes]:
        """The next reply frame (kind, op id, arg, payload copy)."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.side.replies.poll()
            if frame is not None:
                kind, op_id, arg, payload = frame
                out = (kind, op_id, arg, bytes(payload))
                payload.release()
                self.side.replies.release()
                return out
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no reply frame")
            readable = self.side.sleep(self.side.replies.pending, (self.peer.sock.fileno(),),
                                       remaining)
            if readable:  # the control socket: the service is ending the session
                raise SessionEnded(self.peer.outcome())

    def result(self, op_id: int) -> tuple[int, bytes]:
        while True:
            kind, got_id, arg, payload = self.reply()
            assert got_id == op_id
            if kind == FrameKind.DONE:
                return arg, payload

    def close(self) -> None:
        self.side.close()
        self.peer.close()


class SessionEnded(Exception):
    def __init__(self, outcome: tuple[str, int]) -> None:
        super().__init__(outcome)
        self.outcome = outcome
