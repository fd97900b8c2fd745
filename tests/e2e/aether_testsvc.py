"""A service used by the end-to-end tests: slow, privileged, failing and
large-result operations around the real Guard schema."""

from __future__ import annotations

import aether
from aether.service import OperationContext


@aether.operation(code=0x0F01, name="test.slow", result=int)
class Slow(aether.Params, frozen=True, kw_only=True):
    """Count to ``steps`` with ``delay`` seconds per step; honours cancel."""

    steps: int = 100
    delay: float = 0.02


@aether.operation(code=0x0F02, name="test.privileged", result=str, privileged=True)
class Privileged(aether.Params, frozen=True, kw_only=True):
    """Only for privileged callers."""

    note: str = ""


@aether.operation(code=0x0F03, name="test.big_result", result=bytes, idempotent=True)
class BigResult(aether.Params, frozen=True, kw_only=True):
    """Return ``size`` bytes."""

    size: int


@aether.operation(code=0x0F04, name="test.fail", result=None)
class Fail(aether.Params, frozen=True, kw_only=True):
    """Always fails with the given message."""

    message: str = "as requested"


@aether.operation(code=0x0F05, name="test.whoami", result=list[int])
class WhoAmI(aether.Params, frozen=True, kw_only=True):
    """The caller's verified pid, uid and gid."""


@aether.operation(code=0x0F06, name="test.stubborn", result=str)
class Stubborn(aether.Params, frozen=True, kw_only=True):
    """Ignores CANCEL: runs to the end once started (like a commit)."""

    delay: float = 0.3


@aether.operation(code=0x0F07, name="test.nap", result=None)
class Nap(aether.Params, frozen=True, kw_only=True):
    """Holds the session's own thread for ``delay`` seconds (an inline handler
    that is slow), so the reply comes late without STARTED or progress."""

    delay: float = 0.01


import sys  # noqa: E402

schema = sys.modules[__name__]
service = aether.Service("testsvc", schema=schema)


@service.handler(Slow)
def slow(params: Slow, ctx: OperationContext) -> int:
    for i in range(params.steps):
        if ctx.wait_cancelled(params.delay):
            raise aether.Cancelled("cancelled")
        ctx.progress(i + 1, params.steps, f"step {i + 1}")
    return params.steps


@service.handler(Nap, inline=True)
def nap(params: Nap, ctx: OperationContext) -> None:
    ctx.wait_cancelled(params.delay)


@service.handler(Privileged)
def privileged(params: Privileged, ctx: OperationContext) -> str:
    return f"hello uid {ctx.caller.uid}"


@service.handler(BigResult)
def big_result(params: BigResult, ctx: OperationContext) -> bytes:
    return bytes(params.size)


@service.handler(Fail)
def fail(params: Fail, ctx: OperationContext) -> None:
    raise aether.OperationFailed(params.message, code=42)


@service.handler(WhoAmI, inline=True)
def whoami(params: WhoAmI, ctx: OperationContext) -> list[int]:
    return [ctx.caller.pid, ctx.caller.uid, ctx.caller.gid]


@service.handler(Stubborn)
def stubborn(params: Stubborn, ctx: OperationContext) -> str:
    import threading

    threading.Event().wait(params.delay)  # deliberately deaf to cancellation
    return "committed"
