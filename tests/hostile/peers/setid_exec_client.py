"""Exec of a set-uid program between connect() and CLIENT_PID (threat T6,
exec *before* the handshake; docs/protocol.md H3).

argv: SOCKET SETUID_BINARY. Runs as root. This process (R) is a child
subreaper. It forks the connector P, which drops to uid/gid 65534, connects
(so SO_PEERCRED says 65534), forks the holder C (C keeps the socket), and
execve()s SETUID_BINARY (a set-uid-root copy of sleep): same pid, now euid 0.
C waits for the exec (EOF on a close-on-exec pipe, then the new euid in
/proc/<pid>/status), then sends CLIENT_PID with that pid -- the connecting
pid, as the kernel says -- and reports what the service answered. When C is
done, R kills P (its own child) and reaps everyone.
"""

# Imported before the drop to uid 65534, which cannot read the interpreter's
# files under /root (the holder opens /proc/<pid>/status as ascii).
import encodings.ascii  # noqa: F401
import os
import signal
import sys
import time

from rawpeer import RawPeer, die_after, report, set_child_subreaper, wait_readable

from aether.wire import ErrorCode, messages as m

NOBODY = 65534


def euid_of(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("Uid:"):
                return int(line.split()[2])
    raise RuntimeError("no Uid line")


def holder(peer: RawPeer, exec_r: int, done_w: int) -> None:
    target = os.getppid()
    if not wait_readable(exec_r, 15) or os.read(exec_r, 1):
        report(who="holder", fatal="no exec")
        os._exit(1)
    deadline = time.monotonic() + 5
    while euid_of(target) != 0:  # creds are committed just after the fds close
        if time.monotonic() > deadline:
            report(who="holder", fatal="the set-uid exec did not take effect")
            os._exit(1)
    peer.send(m.ClientPid(target))
    events = []
    while True:
        try:
            event = peer.recv(3.0)
        except TimeoutError:
            events.append(["Timeout"])
            break
        if isinstance(event, m.Error):
            events.append(["Error", ErrorCode(event.error).name])
        else:
            events.append([type(event).__name__])
        if isinstance(event, m.ConnectionClosed):
            break
    report(who="holder", target=target, events=events)
    os.close(done_w)
    os._exit(0)


def connector(path: str, binary: str, done_w: int) -> None:
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)
    peer = RawPeer(path)
    peer.hello()
    exec_r, exec_w = os.pipe()  # both close-on-exec
    if os.fork() == 0:
        os.close(exec_w)
        holder(peer, exec_r, done_w)
    os.close(exec_r)
    os.close(done_w)
    report(who="connector", pid=os.getpid(), euid=os.geteuid())
    os.execv(binary, [binary, "30"])


def main() -> None:
    die_after(60)
    path, binary = sys.argv[1], sys.argv[2]
    set_child_subreaper()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(done_r)
        try:
            connector(path, binary, done_w)
        except BaseException as exc:
            report(who="connector", fatal=repr(exc))
        os._exit(1)
    os.close(done_w)
    wait_readable(done_r, 30)  # EOF: the holder is done
    os.kill(pid, signal.SIGKILL)  # our own child, not yet reaped: the pid is still its
    statuses = [os.waitpid(pid, 0)[1]]
    while True:
        try:
            statuses.append(os.wait()[1])
        except ChildProcessError:
            break
    report(who="reaper", statuses=statuses)


main()
