"""Harness: the schema decoder (``aether.schema``), as the service uses it.

The registry of every schema shipped or tested here (builtins, Aether Guard,
the e2e test service) decodes a hostile payload for a chosen operation.
Invariants: ``decode_params``/``decode_result`` return a value or raise
SchemaError (never another exception, never a crash or a hang on nesting or
huge declared lengths); a value that decodes re-encodes and decodes to an
equal value.
"""

from __future__ import annotations

try:
    from . import _paths
except ImportError:
    import _paths  # type: ignore[no-redef]  # noqa: F401

import aether_testsvc

import aether_guard.schema
from aether.errors import SchemaError
from aether.schema import builtins, encode
from aether.schema.registry import Registry

REGISTRY = Registry.from_modules(builtins, aether_guard.schema, aether_testsvc.schema)
CODES = sorted(spec.code for spec in REGISTRY)


def one_input(data: bytes) -> None:
    if not data:
        return
    code = CODES[data[0] % len(CODES)]
    payload = data[1:]
    decode = REGISTRY.decode_result if data[0] & 0x80 else REGISTRY.decode_params
    try:
        value = decode(code, payload)
    except SchemaError:
        return
    again = decode(code, encode(value))
    assert again == value or value != value, (code, payload.hex())  # NaN is not equal to itself

