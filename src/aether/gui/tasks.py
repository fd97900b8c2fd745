"""Running blocking work off the GUI thread and getting its outcome back.

Every call that may block on IPC (connecting, the handshake, an operation,
a status poll, even a CANCEL) runs as a ``QRunnable`` on the panel's own
``QThreadPool``. Outcomes come back to the GUI thread through one queued
Qt signal: :func:`post` wraps a callable and the dispatcher, which lives in
the GUI thread, runs it there. Widgets are therefore only ever touched by
the GUI thread.

The pool is sized for long operations: Qt's global pool has one thread per
core (two here), so two running operations would starve the status polls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal, Slot

log = logging.getLogger("aether.gui")

MAX_THREADS = 64


class _Dispatcher(QObject):
    """Lives in the GUI thread; runs the callables posted to it there."""

    call = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.call.connect(self._run, Qt.ConnectionType.QueuedConnection)

    @Slot(object)
    def _run(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:  # a bug in a GUI callback must not kill the event loop
            log.exception("GUI callback failed")


_dispatcher: _Dispatcher | None = None
_pool: QThreadPool | None = None


def install() -> None:
    """Create the dispatcher (in the GUI thread) and the worker pool."""
    global _dispatcher, _pool
    if _dispatcher is None:
        _dispatcher = _Dispatcher()
    if _pool is None:
        _pool = QThreadPool()
        _pool.setMaxThreadCount(MAX_THREADS)
        _pool.setExpiryTimeout(30_000)


def post(fn: Callable[[], None]) -> None:
    """Run ``fn`` in the GUI thread (from any thread), soon."""
    assert _dispatcher is not None, "aether.gui.tasks.install() was not called"
    _dispatcher.call.emit(fn)


class _Runnable(QRunnable):
    def __init__(self, work: Callable[[], Any], done: Callable[[Any], None] | None,
                 failed: Callable[[BaseException], None] | None) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self.work = work
        self.done = done
        self.failed = failed

    def run(self) -> None:
        try:
            value = self.work()
        except BaseException as exc:
            if self.failed is not None:
                failed, error = self.failed, exc  # ``exc`` is unbound after the block
                post(lambda: failed(error))
            else:
                log.warning("background task failed: %s", exc)
            return
        if self.done is not None:
            done = self.done
            post(lambda: done(value))


def submit(work: Callable[[], Any], done: Callable[[Any], None] | None = None,
           failed: Callable[[BaseException], None] | None = None) -> None:
    """Run ``work()`` on a pool thread; then ``done(value)`` or ``failed(exc)``
    in the GUI thread."""
    assert _pool is not None, "aether.gui.tasks.install() was not called"
    _pool.start(_Runnable(work, done, failed))


def wait_idle(timeout_ms: int = 10_000) -> bool:
    """Wait for the pool's tasks to end (at exit and in tests)."""
    return True if _pool is None else bool(_pool.waitForDone(timeout_ms))

