"""Structures every session uses besides the operations' own: the error
payload of a failed or rejected operation and the progress tail."""

from __future__ import annotations

import msgspec


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Return payload when an operation did not end OK."""

    message: str
    details: dict[str, str | int | float | bool | None] = {}


class ProgressInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Tail of a PROGRESS message."""

    message: str = ""
    done: int = 0
    total: int = 0
