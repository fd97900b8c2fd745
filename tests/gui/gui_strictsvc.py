"""The e2e test service, but its policy grants privileged operations to a
uid that is not ours: for the GUI's "unauthorized" test."""

from __future__ import annotations

import aether_testsvc as ts

from aether.service.policy import Policy

STRANGER = 54321

service = ts.service
service.policy = Policy(privileged_uids=frozenset({STRANGER}))
