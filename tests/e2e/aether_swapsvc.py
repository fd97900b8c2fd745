"""A service whose reload hook registers a new handler for an operation that
already has one (tests/e2e/test_handler_swap.py): sessions that were open
before the reload must call the new one."""

from __future__ import annotations

import aether
from aether.service import OperationContext, Service


@aether.operation(code=0x0E01, name="swap.version", result=str)
class Version(aether.Params, frozen=True, kw_only=True):
    """Which handler answered."""


service = Service("swap-test", schema=[__import__(__name__)])


@service.handler(Version, inline=True)
def first(params: Version, ctx: OperationContext) -> str:
    return "first"


@service.on_reload
def swap(svc: Service) -> None:
    @svc.handler(Version, inline=True)
    def second(params: Version, ctx: OperationContext) -> str:
        return "second"
