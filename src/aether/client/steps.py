"""Names of the handshake steps a client reports as they happen (for the demo,
the CLI's ``-v`` and the GUI's connection panel)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

CONNECTED: Final = "connected"
SERVICE_VERIFIED: Final = "service-verified"
HELLO: Final = "hello"
PTRACER_SET: Final = "ptracer-set"
BLOCKS_ALLOCATED: Final = "blocks-allocated"
PATTERN_WRITTEN: Final = "pattern-written"
PID_SENT: Final = "pid-sent"
ADDRESSES_SENT: Final = "addresses-sent"
SERVICE_READ_PATTERN: Final = "service-read-pattern"
ZEROS_VERIFIED: Final = "zeros-verified"
SOCKET_MODE: Final = "socket-mode"
MAPPING_MODE: Final = "mapping-mode"
READY: Final = "ready"
FAILED: Final = "failed"

StepCallback = Callable[[str, str], None]
