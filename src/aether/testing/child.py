"""A child Python process driven line by line over its stdin and stdout,
every wait bounded (for multi-process tests of the primitives)."""

from __future__ import annotations

import select
import selectors
import signal
import subprocess
import sys


class ScriptedChild:
    """``python -c SCRIPT ARGS...`` whose stdout lines are its answers."""

    def __init__(self, script: str, *args: str, timeout: float = 20.0) -> None:
        self.timeout = timeout
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def line(self) -> str:
        """The child's next line; AssertionError if none comes in time."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        if not ready:
            raise AssertionError("child did not answer in time")
        text = self.proc.stdout.readline()
        if not text:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"child ended: {err}")
        return text.strip()

    def post(self, text: str) -> None:
        """Send a line without waiting for an answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def send(self, text: str) -> str:
        """Send a line and return the child's answer."""
        self.post(text)
        return self.line()

    def kill(self) -> None:
        """SIGKILL this child (only it), reap it and close its pipes."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=self.timeout)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def wait(self) -> int:
        return self.proc.wait(timeout=self.timeout)


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The next stdout line of a text-mode child, waiting at most ``timeout`` s."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout), f"child {proc.pid} silent for {timeout} s"
    line = proc.stdout.readline()
    assert line, f"child {proc.pid} exited with {proc.wait(timeout=timeout)}"
    return line.strip()


def send_line(proc: subprocess.Popen[str], text: str) -> None:
    """Write one line to a text-mode child's stdin."""
    assert proc.stdin is not None
    proc.stdin.write(text + "\n")
    proc.stdin.flush()
