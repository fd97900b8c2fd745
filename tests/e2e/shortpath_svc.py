"""A service whose operations all run inline, for the mapping transport's
short paths (Client._call_mapped, Session._execute_inline): each one leaves
the short path a different way and must end exactly as the general path
would end it."""

from __future__ import annotations

import os
import sys
import time

import aether
from aether.service import Cancelled, OperationContext, OperationFailed, Policy


@aether.operation(code=0x0E01, name="sp.fail", result=None)
class Fail(aether.Params, frozen=True, kw_only=True):
    message: str = "inline failure"


@aether.operation(code=0x0E02, name="sp.big", result=bytes)
class Big(aether.Params, frozen=True, kw_only=True):
    size: int


@aether.operation(code=0x0E03, name="sp.unencodable", result=None)
class Unencodable(aether.Params, frozen=True, kw_only=True):
    pass


@aether.operation(code=0x0E04, name="sp.denied", result=str)
class Denied(aether.Params, frozen=True, kw_only=True):
    pass


@aether.operation(code=0x0E05, name="sp.progress", result=int)
class Progress(aether.Params, frozen=True, kw_only=True):
    steps: int = 3


@aether.operation(code=0x0E06, name="sp.cancelled", result=None)
class GivesUp(aether.Params, frozen=True, kw_only=True):
    pass


@aether.operation(code=0x0E07, name="sp.nap", result=str)
class Nap(aether.Params, frozen=True, kw_only=True):
    delay: float


@aether.operation(code=0x0E08, name="sp.add", result=int)
class Add(aether.Params, frozen=True, kw_only=True):
    a: int
    b: int


@aether.operation(code=0x0E09, name="sp.hold", result=str)
class Hold(aether.Params, frozen=True, kw_only=True):
    started: str  # a file the handler creates when it starts
    release: str  # the handler returns once this file exists


@aether.operation(code=0x0E0A, name="sp.context", result=list[int])
class Context(aether.Params, frozen=True, kw_only=True):
    pass


schema = sys.modules[__name__]
# Nobody may call sp.denied: uid 4294967294 is nobody's real uid here.
service = aether.Service("shortpath", schema=schema,
                         policy=Policy(rules={"sp.denied": frozenset({4294967294})}))


@service.handler(Fail, inline=True)
def fail(params: Fail, ctx: OperationContext) -> None:
    raise OperationFailed(params.message, code=7)


@service.handler(Big, inline=True)
def big(params: Big, ctx: OperationContext) -> bytes:
    return b"\xab" * params.size


@service.handler(Unencodable, inline=True)
def unencodable(params: Unencodable, ctx: OperationContext) -> object:
    return object()


@service.handler(Denied, inline=True)
def denied(params: Denied, ctx: OperationContext) -> str:
    return "should not run"


@service.handler(Progress, inline=True)
def progress(params: Progress, ctx: OperationContext) -> int:
    for i in range(params.steps):
        ctx.progress(i + 1, params.steps, f"step {i + 1}")
    return params.steps


@service.handler(GivesUp, inline=True)
def gives_up(params: GivesUp, ctx: OperationContext) -> None:
    raise Cancelled("gave up")


@service.handler(Nap, inline=True)
def nap(params: Nap, ctx: OperationContext) -> str:
    ctx.wait_cancelled(params.delay)
    return "rested"


@service.handler(Add, inline=True)
def add(params: Add, ctx: OperationContext) -> int:
    return params.a + params.b


@service.handler(Hold, inline=True)
def hold(params: Hold, ctx: OperationContext) -> str:
    with open(params.started, "x"):
        pass
    deadline = time.monotonic() + 60
    while not os.path.exists(params.release):
        if time.monotonic() > deadline:
            raise OperationFailed("never released")
        ctx.wait_cancelled(0.005)
    return "released"


# Every context sp.context was given, kept past its operation's end as a
# handler may keep one: the session makes each operation's context ahead of
# time (Session._next_op), and none may be handed out twice or changed later.
_contexts: list[tuple[OperationContext, int, str]] = []


@service.handler(Context, inline=True)
def context(params: Context, ctx: OperationContext) -> list[int]:
    _contexts.append((ctx, ctx.op_id, ctx.op_name))
    unchanged = all(c.op_id == op_id and c.op_name == name and not c.cancelled
                    for c, op_id, name in _contexts)
    distinct = len({id(c) for c, _, _ in _contexts})
    # CLOCK_MONOTONIC is the machine's: the client compares it with its own
    return [ctx.op_id, int(ctx.op_name == "sp.context"), int(ctx.started * 1e9),
            int(unchanged), distinct]
