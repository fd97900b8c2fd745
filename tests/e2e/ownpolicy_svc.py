"""A service whose Policy subclass decides by its own logic, not by rules:
its inline operations must be refused on every transport's short path
exactly as on the general path (Guard's read groups are such a policy)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import aether
from aether.schema import OperationSpec
from aether.service import OperationContext, Policy
from aether.service.policy import Caller


@aether.operation(code=0x0E21, name="own.refused", result=int)
class Refused(aether.Params, frozen=True, kw_only=True):
    a: int


@aether.operation(code=0x0E22, name="own.allowed", result=int)
class Allowed(aether.Params, frozen=True, kw_only=True):
    a: int


@dataclass(frozen=True)
class RefuseByName(Policy):
    """Refuses own.refused to everyone, with no rule naming it."""

    def allows(self, spec: OperationSpec, caller: Caller) -> bool:
        return spec.name != "own.refused" and super().allows(spec, caller)


schema = sys.modules[__name__]
service = aether.Service("ownpolicy", schema=schema, policy=RefuseByName())


@service.handler(Refused, inline=True)
def refused(params: Refused, ctx: OperationContext) -> int:
    raise AssertionError("a refused operation ran")


@service.handler(Allowed, inline=True)
def allowed(params: Allowed, ctx: OperationContext) -> int:
    return params.a + 1
