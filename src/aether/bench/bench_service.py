"""The service ``aether bench`` measures: only the built-in operations
(``aether.echo``, and ``aether.sink`` where this build has it), with limits
raised so that 64 MiB payloads and 256+ idle sessions of one uid fit.
Run as ``aether service run aether.bench.bench_service:service``."""

from __future__ import annotations

from aether.service import Limits, Service

BULK_MAX = 160 * 1024 * 1024

service = Service("aether-bench", limits=Limits(
    max_sessions=4096,
    max_sessions_per_uid=4096,
    max_half_open=1024,
    max_half_open_per_uid=1024,
    max_block_size=BULK_MAX,
    max_payload=BULK_MAX,
    max_workers_per_uid=4096,
))
