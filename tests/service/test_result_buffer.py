"""A session's reused result buffer while a view of the previous result is
still alive (found by ``aether bench load --soak``: the next, larger result
could not be encoded and the session ended with an internal error)."""

from __future__ import annotations

import types

import msgspec

from aether.service.session import Session, _RunningOp
from aether.wire import Status


def _op(result: object) -> _RunningOp:
    op = _RunningOp(op_id=1, spec=None, ctx=None)  # type: ignore[arg-type]
    op.result = result
    op.finished = True
    return op


def test_a_larger_result_is_encoded_while_the_last_ones_view_is_held():
    session = types.SimpleNamespace(_result_buffer=bytearray())
    status, first = Session._outcome(session, _op(b"small"))  # type: ignore[arg-type]
    assert status == Status.OK
    held = first  # e.g. a message object not yet collected
    status, second = Session._outcome(session, _op(b"x" * 100_000))  # type: ignore[arg-type]
    assert status == Status.OK
    assert msgspec.msgpack.decode(bytes(second)) == b"x" * 100_000
    assert msgspec.msgpack.decode(bytes(held)) == b"small"  # the old view still reads what it held
