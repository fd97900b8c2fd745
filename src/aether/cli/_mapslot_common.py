"""Helpers shared by ``aether mapping`` and ``aether mailslot``.

Both primitives live only while a process holds them (a mapping's name
vanishes with its last handle, a mailslot with its creator), so the
``create`` commands stay running until interrupted. :func:`until_signal`
turns SIGINT/SIGTERM/SIGHUP into a clean exit instead of a traceback.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import click


class Stop(BaseException):
    """Raised in the main thread by a termination signal."""


@contextlib.contextmanager
def until_signal() -> Iterator[None]:
    """Run the block; SIGINT, SIGTERM or SIGHUP end it quietly."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Stop

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    except Stop:
        pass
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def wait_forever(seconds: float | None) -> None:
    """Block for ``seconds`` (None: until a signal ends :func:`until_signal`)."""
    threading.Event().wait(seconds)


_SIZE = re.compile(r"^\s*(0x[0-9a-fA-F]+|\d+)\s*([kKmMgGtT]?)(i?[bB])?\s*$")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class SizeType(click.ParamType):  # type: ignore[type-arg]  # generic only since click 8.2
    """A byte count: 4096, 0x1000, 64K, 1M, 5G (binary units)."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = _SIZE.match(str(value))
        if not match:
            self.fail(f"{value!r} is not a size (e.g. 4096, 0x1000, 64K, 1M, 5G)", param, ctx)
        return int(match.group(1), 0) * _UNITS[match.group(2).lower()]


SIZE = SizeType()


def decode_data(data: str, hex_input: bool) -> bytes:
    """Command-line text as bytes (UTF-8, or hex with ``--hex``)."""
    if not hex_input:
        return data.encode("utf-8")
    try:
        return bytes.fromhex(data)
    except ValueError:
        raise click.BadParameter(f"{data!r} is not hex") from None


def describe_bytes(data: bytes) -> dict[str, Any]:
    """JSON fields for a byte string: its hex, and its text if it is UTF-8."""
    out: dict[str, Any] = {"size": len(data), "hex": data.hex()}
    try:
        out["text"] = data.decode("utf-8")
    except UnicodeDecodeError:
        out["text"] = None
    return out
