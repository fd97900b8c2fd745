"""Operations every Aether service has (codes 0x0001-0x00FF)."""

from __future__ import annotations

import msgspec

from .params import Params, operation


class OperationInfo(msgspec.Struct, frozen=True, kw_only=True):
    code: int
    name: str
    summary: str
    privileged: bool
    params_schema: str  # JSON text of the JSON Schema
    result_schema: str


class Description(msgspec.Struct, frozen=True, kw_only=True):
    service: str
    version: str
    fingerprint: int
    operations: list[OperationInfo]


@operation(code=0x0001, name="aether.describe", result=Description, idempotent=True,
           _builtin=True)
class Describe(Params, frozen=True, kw_only=True):
    """List the service's operations with the JSON Schemas of their parameters and results."""


class SessionInfo(msgspec.Struct, frozen=True, kw_only=True):
    session_id: int
    pid: int
    uid: int
    transport: str
    operations: int
    running: str | None = None


class ServiceStatus(msgspec.Struct, frozen=True, kw_only=True):
    service: str
    version: str
    pid: int
    uptime_s: float
    sessions: int
    operations_served: int
    session_list: list[SessionInfo] = []


@operation(code=0x0002, name="aether.status", result=ServiceStatus, idempotent=True,
           _builtin=True)
class Status(Params, frozen=True, kw_only=True):
    """Version, uptime, sessions, operations served and each session's transport."""


@operation(code=0x0003, name="aether.echo", result=bytes, idempotent=True, _builtin=True)
class Echo(Params, frozen=True, kw_only=True):
    """Return the bytes sent (for tests and benchmarks)."""

    data: bytes = b""


@operation(code=0x0004, name="aether.sink", result=int, _builtin=True)
class Sink(Params, frozen=True, kw_only=True):
    """Receive bytes and return how many arrived (one-way bulk throughput).

    The service reads ``data`` where it arrived (see ``IN_PLACE``); with the
    mapping transport and a loan (``Client.loan``) the bytes are copied once."""

    data: bytes


class SinkView(msgspec.Struct, frozen=True, kw_only=True):
    """What the service decodes ``aether.sink``'s parameters into: ``data`` is
    a view of the received payload, not a copy (valid while the handler runs)."""

    data: memoryview


# op code -> the type a service decodes its parameters into instead of the
# declared one: same wire format, zero-copy views for large byte fields.
IN_PLACE: dict[int, type[msgspec.Struct]] = {0x0004: SinkView}
