"""Service subprocesses for tests, the demo and benchmarks."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from aether import osapi
from aether.errors import AetherError, AetherTimeoutError

ENV_RUNTIME_DIR = "AETHER_RUNTIME_DIR"


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The current environment, with ``src`` importable and output unbuffered."""
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("NOTIFY_SOCKET", None)
    if extra:
        env.update(extra)
    return env


def sigint_as_from_a_terminal() -> None:
    """A ``preexec_fn`` for a child that a test interrupts with SIGINT: puts
    SIGINT back to its default, as a terminal's foreground process has it.

    A test run started in the background by a non-interactive shell (a CI
    runner's ``cmd &``) inherits SIGINT ignored, every child inherits that
    across ``exec``, and Python then installs no KeyboardInterrupt handler:
    the child would never see the test's Ctrl-C.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def isolated_runtime(mode: int = 0o700) -> Iterator[Path]:
    """A fresh runtime directory, set as ``$AETHER_RUNTIME_DIR`` while inside."""
    path = Path(tempfile.mkdtemp(prefix="aether-rt-"))
    os.chmod(path, mode)
    old = os.environ.get(ENV_RUNTIME_DIR)
    os.environ[ENV_RUNTIME_DIR] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop(ENV_RUNTIME_DIR, None)
        else:
            os.environ[ENV_RUNTIME_DIR] = old
        shutil.rmtree(path, ignore_errors=True)


class ServiceProcess:
    """``aether service run TARGET`` in a subprocess.

    Args:
        target: ``"guard"`` or ``"package.module:attribute"``.
        socket_path: where the service listens.
        args: extra arguments for ``aether service run``.
        env: extra environment variables.
        max_fds: a hard RLIMIT_NOFILE for the service (exhaustion tests).
    """

    def __init__(
        self,
        target: str,
        socket_path: str | os.PathLike[str],
        *,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        log_level: str = "",
        max_fds: int | None = None,
    ) -> None:
        self.target = target
        self.socket_path = Path(socket_path)
        self.args = list(args)
        self.env = env or {}
        self.log_level = log_level
        self.max_fds = max_fds
        self.stderr_path: Path | None = None
        self._saved_stderr = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self._notify_dir: str | None = None
        self._notify: socket.socket | None = None
        self.status_lines: list[str] = []
        self._parent: int | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 20.0) -> ServiceProcess:
        """Start and wait for READY=1; raise with the service's stderr if it fails."""
        self._cleanup()  # a restart: the last run's socket and directory go first
        self._notify_dir = tempfile.mkdtemp(prefix="aether-notify-")
        notify_path = os.path.join(self._notify_dir, "notify")
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._notify.bind(notify_path)
        env = python_env({**self.env, "NOTIFY_SOCKET": notify_path})
        verbosity = {"": [], "info": ["-v"], "debug": ["-vv"]}[self.log_level]
        cmd = [sys.executable, "-m", "aether", *verbosity, "service", "run", self.target,
               "--socket", str(self.socket_path), *self.args]
        # stderr goes to a file: a pipe nobody reads would block a chatty service.
        self.stderr_path = Path(self._notify_dir) / "stderr.log"
        # A service started from the main thread dies with this process even
        # when it cannot clean up (a crash, SIGKILL): no orphan outlives a
        # test run. Not from other threads: the signal follows the forking
        # *thread*, and a harness thread that ends would kill its service.
        self._parent = os.getpid() if threading.current_thread() is threading.main_thread() \
            else None
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                preexec_fn=self._in_child if self.max_fds or self._parent else None,
            )
        try:
            self.wait_for("READY=1", timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def _in_child(self) -> None:
        """In the child before exec: the parent-death signal, and a hard
        descriptor limit (for exhaustion tests)."""
        if self._parent is not None:
            osapi.set_parent_death_signal(signal.SIGKILL, parent=self._parent)
        if self.max_fds:
            import resource

            resource.setrlimit(resource.RLIMIT_NOFILE, (self.max_fds, self.max_fds))

    def wait_for(self, field: str, timeout: float) -> str:
        """Wait for a notify datagram containing ``field``; return the datagram."""
        assert self._notify is not None and self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AetherTimeoutError(f"service did not send {field} within {timeout} s"
                                         + self._stderr_tail())
            self._notify.settimeout(min(remaining, 0.25))
            try:
                data = self._notify.recv(4096).decode()
            except TimeoutError:
                if self.proc.poll() is not None:
                    raise AetherError(
                        f"service exited with {self.proc.returncode} before {field}"
                        + self._stderr_tail()
                    ) from None
                continue
            self.status_lines.append(data)
            if field in data.split("\n"):
                return data

    def _stderr_tail(self) -> str:
        text = self.stderr_text()
        return "\n--- service stderr ---\n" + text[-4000:] if text else ""

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait for exit; returns the exit code (kills on timeout)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AetherTimeoutError(f"service pid {self.pid} ignored SIGTERM for {timeout} s") \
                from None
        self._cleanup()
        return code

    def kill(self) -> None:
        """SIGKILL this service process (only it) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._cleanup()

    def stderr_text(self) -> str:
        """What the service wrote to stderr so far."""
        if self.stderr_path is None:
            return self._saved_stderr
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def _cleanup(self) -> None:
        if self.stderr_path is not None:
            self._saved_stderr = self.stderr_text()
            self.stderr_path = None
        if self._notify is not None:
            self._notify.close()
            self._notify = None
        if self._notify_dir is not None:
            shutil.rmtree(self._notify_dir, ignore_errors=True)
            self._notify_dir = None

    def __enter__(self) -> ServiceProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.stop()
            except AetherError:
                pass
        self._cleanup()
