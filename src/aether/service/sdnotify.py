"""sd_notify(3) without libsystemd: READY, STATUS, WATCHDOG and STOPPING
datagrams to ``$NOTIFY_SOCKET``.

Written by hand because the protocol is one datagram per message and the
Python bindings (python-systemd) need the C library and headers installed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

log = logging.getLogger("aether.service")


class Notifier:
    """Talks to the service manager if ``NOTIFY_SOCKET`` is set; no-op otherwise."""

    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.address = address
        self._sock: socket.socket | None = None
        self._watchdog: threading.Thread | None = None
        self._stop = threading.Event()
        if address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; False if it could not be sent."""
        if self._sock is None:
            return False
        target = self.address
        if target.startswith("@"):
            target = "\0" + target[1:]
        try:
            self._sock.sendto("\n".join(fields).encode(), target)
        except OSError as exc:
            log.debug("sd_notify to %s failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str = "") -> None:
        fields = ["READY=1", f"MAINPID={os.getpid()}"]
        if status:
            fields.append(f"STATUS={status}")
        self.notify(*fields)

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")

    def stopping(self, status: str = "") -> None:
        self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def watchdog_interval(self) -> float | None:
        """Half of ``WATCHDOG_USEC`` in seconds, if the watchdog is for us."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return max(0.001, int(usec) / 2_000_000)
        except ValueError:
            return None

    def start_watchdog(self, healthy: Callable[[], bool] = lambda: True) -> None:
        """Send ``WATCHDOG=1`` every half watchdog period while ``healthy()``."""
        interval = self.watchdog_interval()
        if interval is None or self._sock is None or self._watchdog is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval):
                if healthy():
                    self.notify("WATCHDOG=1")

        self._watchdog = threading.Thread(target=loop, name="aether-watchdog", daemon=True)
        self._watchdog.start()

    def close(self) -> None:
        self._stop.set()
        if self._watchdog is not None:
            self._watchdog.join(1.0)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
