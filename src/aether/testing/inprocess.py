"""A service served by a thread of the test's own process, for tests that
look at the service's objects (its sessions, its interpreter settings) and
not only at what a client sees. Everything else starts the service as a
real subprocess (:class:`aether.testing.ServiceProcess`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aether.service import Service


@contextmanager
def serving_in_thread(svc: Service, path: Path, timeout: float = 20) -> Iterator[None]:
    """Serve ``svc`` on ``path`` in a thread until the block ends; READY (its
    ``on_ready``) is the event waited for, and the thread must end with it."""
    ready = threading.Event()
    thread = threading.Thread(
        target=svc.serve, args=(path,),
        kwargs={"install_signal_handlers": False, "on_ready": lambda _p: ready.set()},
        daemon=True)
    thread.start()
    try:
        assert ready.wait(timeout), "service did not start"
        yield
    finally:
        svc.stop()
        thread.join(timeout)
        assert not thread.is_alive(), "service thread did not end"
