"""Test-only service targets for the hostile suite (run by ServiceProcess as
``hostile_targets:service`` with this directory on PYTHONPATH).

``service``: the Guard's schema and handler with a 0.5 s handshake timeout,
so the silent-client cases (threat T23) run in well under a second each.
"""

from __future__ import annotations

from hostile_support import SHORT_HANDSHAKE_TIMEOUT

import aether
import aether_guard.schema
from aether_guard.service import hash_tree

service = aether.Service(
    "guard-short", schema=aether_guard.schema,
    limits=aether.Limits(handshake_timeout=SHORT_HANDSHAKE_TIMEOUT),
)
service.handler(aether_guard.schema.HashTree)(hash_tree)
