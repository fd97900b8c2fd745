"""Declaring operations: the :class:`Params` base and the :func:`operation`
decorator.

An operation is a msgspec Struct (its parameters) decorated with its code,
its dotted name and its result type. The module that declares them is the
seed's "separate library": client and service import the same classes.

msgspec's metaclass refuses extra class keywords, hence a decorator rather
than ``class Scan(Params, code=...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")
MAX_CODE = 0xFFFFFFFF
RESERVED_CODES = range(0x0001, 0x0100)  # aether.* built-ins


class Params(msgspec.Struct, frozen=True, kw_only=True):
    """Base class of every operation's parameters (a frozen msgspec Struct)."""


@dataclass(frozen=True, slots=True)
class OperationSpec:
    """What the decorator records about one operation."""

    code: int
    name: str
    params: type[Params]
    result: Any
    privileged: bool = False
    idempotent: bool = False
    doc: str = ""

    @property
    def summary(self) -> str:
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""


P = TypeVar("P", bound=type[Params])

SPEC_ATTR = "__aether_operation__"


def operation(
    *,
    code: int,
    name: str,
    result: Any = None,
    privileged: bool = False,
    idempotent: bool = False,
    _builtin: bool = False,
) -> Callable[[P], P]:
    """Declare a Params subclass as an operation.

    Args:
        code: the operation's number on the wire, unique in its registry
            (0x0001-0x00FF are reserved for ``aether.*`` built-ins).
        name: dotted lowercase name, e.g. ``"guard.scan"``.
        result: the result type (a Struct or any msgspec-encodable type;
            None for no result).
        privileged: only callers the service's policy allows may call it
            (default-deny).
        idempotent: safe to repeat; informational, Aether never retries
            an operation by itself.
    """
    if not 0 < code <= MAX_CODE:
        raise ValueError(f"operation code {code} out of range")
    if code in RESERVED_CODES and not _builtin:
        raise ValueError(f"operation code 0x{code:x} is reserved for aether built-ins")
    if not name or set(name) - NAME_CHARS or name.startswith(".") or ".." in name:
        raise ValueError(f"operation name {name!r} must be dotted lowercase words")
    if name.startswith("aether.") and not _builtin:
        raise ValueError("the aether.* namespace is reserved")

    def decorate(cls: P) -> P:
        if not (isinstance(cls, type) and issubclass(cls, Params)):
            raise TypeError("@operation decorates subclasses of aether.Params")
        spec = OperationSpec(
            code=code,
            name=name,
            params=cls,
            result=type(None) if result is None else result,
            privileged=privileged,
            idempotent=idempotent,
            doc=cls.__doc__ or "",
        )
        setattr(cls, SPEC_ATTR, spec)
        return cls

    return decorate


def spec_of(params_type: type[Params] | Params) -> OperationSpec:
    """The OperationSpec of a decorated Params class (or instance)."""
    cls = params_type if isinstance(params_type, type) else type(params_type)
    spec = getattr(cls, SPEC_ATTR, None)
    if not isinstance(spec, OperationSpec) or spec.params is not cls:
        raise TypeError(f"{cls.__name__} is not declared with @aether.operation")
    return spec
