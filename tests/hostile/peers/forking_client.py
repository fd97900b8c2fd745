"""A client whose connecting process goes away while a forked child keeps the
socket (threats T5 and T6).

argv: SOCKET MODE ADDRESS [TREE]

This process (R) is a child subreaper, so every descendant is reaped here.
It forks the connector P, which does a correct handshake with its blocks at
the fixed ADDRESS and forks the holder C (C inherits the socket). Then:

  exec     P execve()s peers/exec_image.py, which maps the same ADDRESS with
           0x1337D00D and reports its hash; only then C sends EXECUTE
           (aether.echo). The service must not write into the new image.
  exec_op  as exec, but P first starts guard.hash_tree TREE (STARTED and the
           first PROGRESS seen) and execs while it runs; TREE (conftest's
           slow_tree) gives no further progress for many seconds, and C sends
           CANCEL once the image is up: the service's next write to the client
           (the CANCELLED result) comes after the exec, by construction.
  exec_handshake
           P sends CLIENT_PID, ADDR_PARAM and ADDR_RETN only, then execs (the
           new image maps the pattern at the same addresses); C then sends
           IPC_TEST. The pattern test must not read or zero the new image.
  exit     P exits; C waits for P's exit (pidfd), then for the service to
           close the session, then tries an EXECUTE anyway.

Every process prints JSON lines with "who": connector, holder, image, reaper.
"""

import fcntl
import os
import select
import sys
import termios
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rawpeer import Arena, RawPeer, die_after, report, set_child_subreaper, wait_readable

from aether.schema import builtins as b, encode, spec_of
from aether.wire import ErrorCode, Status, messages as m
from aether_guard.schema import HashTree

HERE = os.path.dirname(os.path.abspath(__file__))


def describe(event: m.Event) -> list[object]:
    match event:
        case m.Error(error=code):
            return ["Error", ErrorCode(code).name if code in ErrorCode._value2member_map_
                    else code]
        case m.TestDone(error=code):
            return ["TestDone", ErrorCode(code).name]
        case m.Started(status=s) | m.Done(status=s):
            return [type(event).__name__, Status(s).name]
        case _:
            return [type(event).__name__]


def drain(peer: RawPeer, timeout: float) -> list[list[object]]:
    """Events until the connection closes (or ``timeout`` passes quietly)."""
    events: list[list[object]] = []
    while True:
        try:
            event = peer.recv(timeout)
        except TimeoutError:
            events.append(["Timeout"])
            return events
        events.append(describe(event))
        if isinstance(event, m.ConnectionClosed):
            return events


def unread_bytes(peer: RawPeer) -> int:
    buf = fcntl.ioctl(peer.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")  # SIOCOUTQ
    return int.from_bytes(buf, sys.byteorder)


def holder_after_exec(peer: RawPeer, arena: Arena, go_r: int, mode: str) -> None:
    if not wait_readable(go_r, 15):
        report(who="holder", fatal="the exec'd image never said go")
        os._exit(1)
    if mode == "exec_handshake":
        sent = peer.send(m.IpcTest())
    elif mode == "exec":
        payload = encode(b.Echo(data=b"into the new image?"))
        # The holder's own copy of the block (fork made it private): the
        # service must not read it, and must not write the new image either.
        arena.write_params(1, 0x0003, payload)
        sent = peer.send(m.Execute(1, len(payload)))
    else:
        sent = peer.send(m.Cancel(1))
    report(who="holder", sent=sent, events=drain(peer, 5.0))
    os._exit(0)


def holder_after_exit(peer: RawPeer, arena: Arena, armed_w: int) -> None:
    pidfd = os.pidfd_open(os.getppid())
    os.write(armed_w, b"x")
    if not wait_readable(pidfd, 15):
        report(who="holder", fatal="the connector did not exit")
        os._exit(1)
    events = drain(peer, 3.0)
    payload = encode(b.Echo(data=b"after the connector died"))
    arena.write_params(1, 0x0003, payload)
    sent = peer.send(m.Execute(1, len(payload)))
    after = drain(peer, 1.0) if sent else []
    report(who="holder", events=events, sent=sent, after=after)
    os._exit(0)


def connector(path: str, mode: str, address: int, tree: str) -> None:
    arena = Arena(address=address)
    peer = RawPeer(path)
    if mode == "exec_handshake":
        peer.hello()
        peer.send(m.ClientPid(os.getpid()))
        peer.send(m.AddrParam(arena.param, arena.param_size))
        peer.send(m.AddrRetn(arena.retn, arena.retn_size))
        # Exec only once the service has read ADDR_RETN (H5 then checks the
        # old image's maps within microseconds), so that IPC_TEST is what
        # meets the exec: SIOCOUTQ counts our datagrams it has not read yet.
        deadline = time.monotonic() + 5
        while unread_bytes(peer) and time.monotonic() < deadline:
            # Between reads of the queue length, wait on our socket: an early
            # reply (an ERROR) ends the wait as well as the service reading.
            select.select([peer.sock], [], [], 0.001)
    else:
        peer.handshake(arena)
    if mode == "exec_op":
        payload = encode(HashTree(root=tree))
        arena.write_params(1, spec_of(HashTree).code, payload)
        peer.send(m.Execute(1, len(payload)))
        started = peer.expect(m.Started)
        if started.status != Status.STARTED:
            report(who="connector", fatal=f"hash_tree not started: {started}")
            os._exit(1)
        peer.expect(m.Progress)
    report(who="connector", pid=os.getpid(), param=arena.param, retn=arena.retn,
           hash=arena.digest())
    sync_r, sync_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(sync_w if mode != "exit" else sync_r)
        if mode == "exit":
            holder_after_exit(peer, arena, sync_w)
        holder_after_exec(peer, arena, sync_r, mode)
    if mode == "exit":
        os.close(sync_w)
        wait_readable(sync_r, 15)
        os._exit(0)
    os.close(sync_r)
    os.set_inheritable(sync_w, True)
    os.execv(sys.executable, [sys.executable, os.path.join(HERE, "exec_image.py"),
                              hex(address), str(sync_w)])


def main() -> None:
    die_after(60)
    path, mode, address = sys.argv[1], sys.argv[2], int(sys.argv[3], 16)
    tree = sys.argv[4] if len(sys.argv) > 4 else ""
    set_child_subreaper()
    pid = os.fork()
    if pid == 0:
        try:
            connector(path, mode, address, tree)
        except BaseException as exc:  # report, never fall back into the reaper's code
            report(who="connector", fatal=repr(exc))
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    others = []
    while True:  # the holder, reparented here when the connector exited
        try:
            others.append(os.wait()[1])
        except ChildProcessError:
            break
    report(who="reaper", connector_status=status, others=others)


main()
