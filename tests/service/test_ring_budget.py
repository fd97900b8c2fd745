"""The per-uid budget of mapping-transport regions: explicit, or a default
that never refuses the sessions a service's own max_payload needs."""

from __future__ import annotations

import aether
from aether.service.host import DEFAULT_RING_BUDGET
from aether.wire import rings

MiB = 1 << 20


def test_default_budget() -> None:
    assert aether.Service("rb-default").ring_budget == DEFAULT_RING_BUDGET


def test_default_budget_grows_with_max_payload() -> None:
    svc = aether.Service("rb-big", limits=aether.Limits(max_payload=65 * MiB))
    largest = rings.region_size(rings.ring_size_for(65 * MiB))
    assert svc.ring_budget == 4 * largest > DEFAULT_RING_BUDGET


def test_an_explicit_budget_is_used_as_is() -> None:
    svc = aether.Service("rb-set", limits=aether.Limits(max_payload=65 * MiB,
                                                      max_ring_bytes_per_uid=300_000))
    assert svc.ring_budget == 300_000
