"""Map Aether errors to the CLI's exit codes and printed messages."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from aether.errors import (
    AetherError,
    AuthorizationError,
    ConnectError,
    HandshakeError,
    OperationError,
    PeerGoneError,
    PrimitiveError,
)

from .main import (
    EXIT_CONNECT,
    EXIT_OPERATION_FAILED,
    EXIT_OTHER,
    EXIT_UNAUTHORIZED,
    EXIT_USAGE,
)

F = TypeVar("F", bound=Callable[..., Any])


def exit_code_for(exc: AetherError) -> int:
    if isinstance(exc, AuthorizationError):
        return EXIT_UNAUTHORIZED
    if isinstance(exc, ConnectError | HandshakeError | PeerGoneError):
        return EXIT_CONNECT
    if isinstance(exc, OperationError):
        if exc.status_name in ("REJECTED_BAD_PARAMS", "REJECTED_UNKNOWN_OP"):
            return EXIT_USAGE
        return EXIT_OPERATION_FAILED
    if isinstance(exc, PrimitiveError):
        return EXIT_OTHER
    return EXIT_OTHER


def handle_errors(func: F) -> F:
    """Decorator for click commands: print an AetherError and exit with its code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except AetherError as exc:
            click.echo(f"aether: error: {exc}", err=True)
            sys.exit(exit_code_for(exc))

    return wrapper  # type: ignore[return-value]
