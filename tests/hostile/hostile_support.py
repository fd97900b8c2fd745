"""Helpers of the hostile suite that are not fixtures (importable by tests
and by the test-only service target)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aether
import aether_guard.schema
from aether.schema import builtins as b, spec_of
from aether.testing import ServiceProcess, python_env, wait_until

HERE = Path(__file__).resolve().parent
SERVE_BUDGET = 1.0  # (b): a well-behaved client is answered within this
SHORT_HANDSHAKE_TIMEOUT = 0.5  # of hostile_targets:service
# guard.hash_tree, the long cancellable operation the raw peers execute.
HASH_TREE = spec_of(aether_guard.schema.HashTree).code


def _proc_footprint(pid: int) -> tuple[int, int]:
    """(threads, open fds) of a process, from /proc."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        threads = next(int(line.split()[1]) for line in fh if line.startswith("Threads:"))
    return threads, len(os.listdir(f"/proc/{pid}/fd"))


class Svc:
    """A service subprocess under test and the checks run after each case."""

    def __init__(self, target: str, path: Path, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.target = target
        self.path = path
        self.env = env
        self.args = args
        self.proc: ServiceProcess | None = None
        self.baseline: tuple[int, int] = (0, 0)
        self._stderr_seen = 0

    def start(self) -> None:
        self.proc = ServiceProcess(self.target, self.path, env=self.env, args=self.args).start()
        self.assert_serving()  # warm up: first imports, lazily created objects
        self.baseline = self._settle()
        self._stderr_seen = len(self.proc.stderr_text())

    def _settle(self) -> tuple[int, int]:
        """The footprint once it stops changing (the warm-up session ending)."""
        seen = [self.footprint()]

        def steady() -> bool:
            now = self.footprint()
            done = now == seen[-1] and now[0] == 1  # only the main thread left
            seen.append(now)
            return done

        wait_until(steady, 5.0, "the service to settle after warm-up", watch_pid=self.pid)
        return seen[-1]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.proc is not None \
            and self.proc.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            if self.alive():
                self.proc.stop()
            else:
                self.proc.kill()

    def restart_if_dead(self) -> None:
        if not self.alive():
            if self.proc is not None:
                self.proc.kill()
            self.start()

    def footprint(self) -> tuple[int, int]:
        return _proc_footprint(self.pid)

    def wait_footprint(self, timeout: float = 2.0) -> None:
        """Threads and fds back to the idle baseline (no leaked session)."""
        wait_until(lambda: self.footprint() == self.baseline, timeout,
                   f"service footprint (threads, fds) to return to {self.baseline} "
                   f"(now {self.footprint()})", watch_pid=self.pid)

    def client(self, timeout: float = SERVE_BUDGET) -> aether.Client:
        return aether.Client(self.path, schema=aether_guard.schema, transport="memory",
                             timeout=timeout)

    def assert_serving(self) -> None:
        """(b) a well-behaved second client is served within SERVE_BUDGET."""
        assert self.alive(), "the service died" + self.stderr_tail()
        t0 = time.monotonic()
        with self.client() as client:
            assert client.transport == "memory"
            assert client.call(b.Echo(data=b"ok"), timeout=SERVE_BUDGET) == b"ok"
        elapsed = time.monotonic() - t0
        assert elapsed < SERVE_BUDGET, f"well-behaved client took {elapsed:.3f} s"

    def status(self) -> b.ServiceStatus:
        with self.client() as client:
            st: b.ServiceStatus = client.call(b.Status(), timeout=SERVE_BUDGET)
            return st

    def wait_sessions(self, count: int, timeout: float = 1.0) -> b.ServiceStatus:
        """Poll aether.status until it shows ``count`` sessions (the asking
        client's own included)."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.status()
            if st.sessions == count:
                return st
            if time.monotonic() > deadline:
                raise AssertionError(f"service shows {st.sessions} sessions, expected {count}: "
                                     f"{st.session_list}")

    def new_stderr(self) -> str:
        assert self.proc is not None
        text = self.proc.stderr_text()
        out, self._stderr_seen = text[self._stderr_seen:], len(text)
        return out

    def stderr_tail(self) -> str:
        return "" if self.proc is None else "\n--- service stderr ---\n" + \
            self.proc.stderr_text()[-3000:]


PEERS = HERE / "peers"


class Peer:
    """A helper process of ``peers/`` speaking JSON lines on stdout."""

    def __init__(self, script: str, *args: str, pass_fds: tuple[int, ...] = ()) -> None:
        env = python_env({"PYTHONPATH": f"{HERE}{os.pathsep}" + python_env()["PYTHONPATH"]})
        self.proc = subprocess.Popen(
            [sys.executable, str(PEERS / script), *args], env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=pass_fds,
        )
        self._buf = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next JSON line, waiting at most ``timeout`` seconds."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(0.0, remaining))
            if not ready:
                raise AssertionError(f"peer {self.proc.args[1]} said nothing in {timeout} s"
                                     + self._stderr())
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"peer exited ({self.proc.wait(5)}) before reporting"
                                     + self._stderr())
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        msg: dict[str, Any] = json.loads(line)
        if "fatal" in msg:
            raise AssertionError(f"peer failed: {msg['fatal']}" + self._stderr())
        return msg

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def wait(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout)

    def _stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return "\n--- peer stderr ---\n" + self.proc.stderr.read().decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL this peer (only it, by pid) and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def finish(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        self.kill()
