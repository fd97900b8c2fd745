"""Conventions every Win32-face function shares: DWORD ranges and
out-parameters (any object with a writable ``.value``, or a ``byref`` of one)."""

from __future__ import annotations

from typing import Any

DWORD_MAX = 0xFFFFFFFF


def is_dword(n: Any) -> bool:
    """True for an int (not a bool) in the DWORD range."""
    return isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= DWORD_MAX


def set_out(out: Any, value: int) -> None:
    """Store ``value`` in an out-parameter; None means the caller did not ask."""
    if out is None:
        return
    target = getattr(out, "_obj", out)  # a ctypes byref() wraps the object
    if not hasattr(target, "value"):
        raise TypeError(f"out-parameter must have a .value, got {type(out).__name__}")
    target.value = value
