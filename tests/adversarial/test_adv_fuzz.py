"""Fuzzing in CI (threats T17-T19, T21): the atheris harnesses of ``fuzz/``
run here under hypothesis, at least 1,000 cases each, so the same bodies and
invariants are exercised on every CI run (``scripts/fuzz.sh`` runs them
coverage-guided for as long as one likes).

Each harness gets random bytes and bytes shaped to get past the first
checks (valid control headers with random fields, real block headers,
MessagePack of random values): see the harness modules for the invariants.
The existing property tests (tests/wire/test_wire_properties.py, 1,000
cases each for the codec and the state machines; tests/schema 1,000 for
TypedDecoder) stay; these add the block checks, the registry-level decoder
of every shipped schema, and the regression inputs found by atheris.
"""

from __future__ import annotations

import json
import struct
import sys

import msgspec
import pytest
from adv_support import HERE
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.strategies import SearchStrategy

ROOT = HERE.parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fuzz import fuzz_names, fuzz_rings, fuzz_schema, fuzz_states, fuzz_wire  # noqa: E402

from aether.wire import Code, rings  # noqa: E402

CASES = settings(max_examples=1000, deadline=None, derandomize=False,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
U64 = st.integers(0, (1 << 64) - 1)
PAGE_ISH = st.one_of(U64, st.integers(0, 1 << 20).map(lambda n: n * 4096),
                     st.sampled_from([0, 4096, 32, 33, (1 << 64) - 4096, 16 << 20,
                                      (16 << 20) + 4096]))


def _control(code: int, flags: int, reserved: int, a: int, b: int, tail: bytes) -> bytes:
    return b"\x00" + struct.pack("<HHIQQ", code, flags, reserved, a, b) + tail


wire_inputs: SearchStrategy[bytes] = st.one_of(
    st.binary(max_size=120),
    st.builds(_control, st.sampled_from([int(c) for c in Code]), st.sampled_from([0, 0, 1]),
              st.sampled_from([0, 0, 0, 1]), U64, U64, st.binary(max_size=40)),
    st.builds(lambda hdr: b"\x01" + hdr, st.binary(min_size=32, max_size=32)),
    st.builds(lambda *f: b"\x01" + struct.pack("<QIIIIQ", *f), U64, st.integers(0, 2**32 - 1),
              st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
              st.sampled_from([0, 0, 0, 1, (1 << 64) - 1])),
    st.builds(lambda *f: b"\x02" + struct.pack("<QQQQ", *f), PAGE_ISH, PAGE_ISH, PAGE_ISH,
              PAGE_ISH),
)

msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.floats()
    | st.text(max_size=12) | st.binary(max_size=12),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=8) | st.sampled_from(
        ["data", "root", "algorithm", "paths", "steps", "delay", "size", "message", "note"]),
        children, max_size=3),
    max_leaves=10,
)
schema_inputs: SearchStrategy[bytes] = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda op, v: bytes([op]) + msgspec.msgpack.encode(v), st.integers(0, 255),
              msgpack_values),
)


def _frames(specs: list[tuple[int, int, int, bytes, bool]], head_delta: int) -> bytes:
    """Request-ring bytes holding frames with honest crcs (unless told to
    lie), and the head index after them (moved by ``head_delta``)."""
    out = bytearray()
    for seq, (kind, op_id, arg, payload, lie) in enumerate(specs, start=1):
        honest = rings.encode_frame(kind, seq, op_id, arg, payload)
        crc = rings.FRAME.unpack_from(honest)[0] ^ (1 if lie else 0)
        out += rings.encode_frame(kind, seq, op_id, arg, payload, crc=crc)
        out += bytes(-len(payload) % 8)
    head = max(0, len(out) + head_delta)
    return b"\x01" + struct.pack("<Q", head) + bytes(out)


ring_inputs: SearchStrategy[bytes] = st.one_of(
    st.binary(min_size=9, max_size=200),
    st.builds(
        _frames,
        st.lists(st.tuples(st.sampled_from([0xC2, 0xC3, 0xC2, 0xC4, 0xC7, 0x42]),
                           st.integers(0, 5), st.integers(0, 2**32 - 1),
                           st.binary(max_size=200), st.booleans()),
                 max_size=6),
        st.one_of(st.just(0), st.just(0), st.integers(-64, 64), st.integers(-(1 << 20), 1 << 20)),
    ),
    st.builds(lambda tail, payload: b"\x00" + struct.pack("<Q", tail) + payload,
              st.one_of(st.integers(0, 1 << 13), st.integers(0, (1 << 64) - 1)),
              st.binary(max_size=1500)),
)


@CASES
@given(ring_inputs)
def test_fuzz_mapping_rings(data: bytes) -> None:
    fuzz_rings.one_input(data)


@CASES
@given(wire_inputs)
def test_fuzz_wire_messages_and_blocks(data: bytes) -> None:
    fuzz_wire.one_input(data)


@CASES
@given(st.binary(min_size=2, max_size=300))
def test_fuzz_state_machines(data: bytes) -> None:
    fuzz_states.one_input(data)


@CASES
@given(schema_inputs)
def test_fuzz_schema_decoder(data: bytes) -> None:
    fuzz_schema.one_input(data)


name_parts = st.sampled_from(["\\\\", "\\", ".", "*", "mailslot", "MAILSLOT", "Local\\",
                              "Global\\", "Session\\", "..", "/", "#", "0", "65535", "\x00",
                              "ß", "host", "a"])
name_inputs: SearchStrategy[bytes] = st.one_of(
    st.binary(max_size=100),
    st.lists(name_parts, max_size=8).map(lambda parts: b"\x00" + "".join(parts).encode()),
    st.builds(lambda path, payload, cut: b"\x01" + fuzz_names.encode_packet(path, payload)[:cut],
              st.sampled_from(["a", "b\\c", "ß", ""]), st.binary(max_size=50),
              st.integers(0, 200)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name_inputs)
def test_fuzz_names_and_remote_packets(data: bytes) -> None:
    fuzz_names.one_input(data)


# Inputs that made an atheris run crash, with the fix (none so far), and the
# corpus the atheris runs kept (fuzz_seeds.json: inputs that reached new
# coverage), replayed on every CI run.
REGRESSIONS: list[tuple[str, bytes]] = []
SEEDS = json.loads((HERE / "fuzz_seeds.json").read_text())
HARNESS = {"wire": fuzz_wire, "states": fuzz_states, "schema": fuzz_schema, "rings": fuzz_rings,
           "names": fuzz_names}


@pytest.mark.parametrize("name", sorted(HARNESS))
def test_fuzz_corpus_and_regressions(name: str) -> None:
    inputs = [bytes.fromhex(h) for h in SEEDS.get(name, [])]
    inputs += [data for harness, data in REGRESSIONS if harness == name]
    assert inputs, f"no seed corpus for {name}"
    for data in inputs:
        HARNESS[name].one_input(data)
