"""aether.wire.messages: the 24-byte control message (docs/protocol.md §2)."""

from __future__ import annotations

import struct

import pytest

from aether.errors import RemoteProtocolError
from aether.wire import CONTROL_SIZE, MAX_TAIL, Code, decode, encode, messages as m

HEADER = struct.Struct("<HHIQQ")
U64 = (1 << 64) - 1

# One sample of every event, with non-trivial values (protocol.md §2.2).
SAMPLES: list[m.Event] = [
    m.Hello(1, 0x0123_4567_89AB_CDEF, 3),
    m.ClientPid(4242),
    m.AddrParam(0x7F12_3456_0000, 64 * 1024),
    m.AddrRetn(0x7F12_3457_0000, 16 * 1024 * 1024),
    m.IpcTest(),
    m.TestDone(0),
    m.TestDone(6),
    m.TestVerified(0),
    m.TestVerified(13),
    m.Execute(1, 5),
    m.Execute(U64, 0xFFFF_FFFF),
    m.Cancel(7),
    m.Started(3, 2),
    m.Progress(3, 500),
    m.Progress(3, 1000, b"\x83\xa7message\xa0\xa4done\x01\xa5total\x02"),
    m.Done(3, 1),
    m.Error(4, 0, "parameter block is executable"),
    m.Error(1, 99, ""),
    m.Goodbye(0),
    m.Goodbye(1, "service is stopping"),
    m.SocketMode(1 << 20),
    m.MapMode(256 * 1024),
    m.MapReady(256 * 1024, 4096 + 512 * 1024),
    m.ExecuteInline(1, 0x0101, b"\x80"),
    m.ExecuteInline(2, 3, b""),
    m.DoneInline(1, 1, b"\xc4\x03abc"),
]

TAIL_CODES = {Code.ERROR, Code.GOODBYE, Code.PROGRESS, Code.EXECUTE_INLINE, Code.DONE_INLINE}
NO_TAIL_CODES = sorted(set(Code) - TAIL_CODES)


def raw(code: int, flags: int = 0, reserved: int = 0, a: int = 0, b: int = 0) -> bytes:
    return HEADER.pack(code, flags, reserved, a, b)


def test_samples_cover_every_code() -> None:
    assert {s.code for s in SAMPLES} == set(Code)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: repr(e)[:40])
def test_encode_decode_round_trip(event: m.Event) -> None:
    """protocol.md §2.1: every event encodes to a header (+ tail) and back."""
    data = encode(event)
    assert len(data) >= CONTROL_SIZE
    assert HEADER.unpack_from(data)[0] == event.code
    assert decode(data) == event
    assert decode(bytearray(data)) == event
    assert decode(memoryview(data)) == event


# protocol.md §2.1 example and §2.2 field placement, byte by byte.
GOLDEN = [
    (
        m.Hello(1, 0x0123_4567_89AB_CDEF, 3),
        "80 00 03 00 00 00 00 00 01 00 00 00 00 00 00 00 ef cd ab 89 67 45 23 01",
    ),
    (
        m.AddrParam(0x7F00_0000_1000, 0x10000),
        "82 00 00 00 00 00 00 00 00 10 00 00 00 7f 00 00 00 00 01 00 00 00 00 00",
    ),
    (
        m.Execute(1, 5),
        "90 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 05 00 00 00 00 00 00 00",
    ),
    (
        m.Started(1, 2),
        "a0 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00",
    ),
    (
        m.Error(4, 0, "bad"),
        "af 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 62 61 64",
    ),
    (
        m.SocketMode(65536),
        "c8 00 00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00 00",
    ),
    (
        m.ExecuteInline(2, 0x0101, b"\x80"),
        "c9 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00 01 01 00 00 00 00 00 00 80",
    ),
]


@pytest.mark.parametrize(("event", "hexbytes"), GOLDEN, ids=lambda x: type(x).__name__)
def test_golden_bytes(event: m.Event, hexbytes: str) -> None:
    golden = bytes.fromhex(hexbytes)
    assert encode(event) == golden
    assert decode(golden) == event


def assert_rejected(data: bytes, **kwargs: int) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        decode(data, **kwargs)
    assert type(info.value) is RemoteProtocolError
    assert info.value.event  # names what was rejected
    return info.value


class TestDecodeRejects:
    """protocol.md §2.3: every malformed datagram raises RemoteProtocolError."""

    @pytest.mark.parametrize("event", SAMPLES[:6], ids=lambda e: type(e).__name__)
    def test_truncated_every_prefix(self, event: m.Event) -> None:
        """§2.3 rule 1: fed byte by byte, every prefix under 24 bytes is rejected."""
        data = encode(event)
        for n in range(CONTROL_SIZE):
            err = assert_rejected(data[:n])
            assert err.event == "truncated"

    @pytest.mark.parametrize("code", [0, 1, 0x7F, 0x87, 0x8F, 0xA3, 0xB1, 0xC2, 0xC7, 0xCB, 0xFFFF])
    def test_unknown_code(self, code: int) -> None:
        """§2.3 rule 2."""
        err = assert_rejected(raw(code))
        assert err.event == "unknown"
        assert f"0x{code:x}" in str(err)

    @pytest.mark.parametrize("code", list(Code), ids=lambda c: c.name)
    def test_reserved_not_zero(self, code: Code) -> None:
        """§2.3 rule 3."""
        for reserved in (1, 0x8000_0000, 0xFFFF_FFFF):
            err = assert_rejected(raw(code, reserved=reserved))
            assert err.event == code.name
            assert "reserved" in str(err)

    @pytest.mark.parametrize("code", sorted(set(Code) - {Code.HELLO}), ids=lambda c: c.name)
    def test_flags_on_non_hello(self, code: Code) -> None:
        """§2.3 rule 4: only HELLO carries flags."""
        for flags in (1, 0x8000, 0xFFFF):
            err = assert_rejected(raw(code, flags=flags))
            assert "flags" in str(err)

    @pytest.mark.parametrize("code", NO_TAIL_CODES, ids=lambda c: c.name)
    def test_tail_where_not_allowed(self, code: Code) -> None:
        """§2.3 rule 5: trailing data after a tail-less header."""
        for extra in (b"\0", b"x" * 100):
            err = assert_rejected(raw(code, a=1) + extra)
            assert "unexpected bytes" in str(err)

    @pytest.mark.parametrize("code", [Code.ERROR, Code.GOODBYE, Code.PROGRESS],
                             ids=lambda c: c.name)
    def test_oversized_text_or_progress_tail(self, code: Code) -> None:
        """§2.3 rule 6: MAX_TAIL is allowed, one more byte is not."""
        assert decode(raw(code) + b"a" * MAX_TAIL).code == code
        err = assert_rejected(raw(code) + b"a" * (MAX_TAIL + 1))
        assert str(MAX_TAIL) in str(err)

    @pytest.mark.parametrize("code", [Code.EXECUTE_INLINE, Code.DONE_INLINE],
                             ids=lambda c: c.name)
    def test_oversized_inline_payload(self, code: Code) -> None:
        """§2.3 rule 7: inline payloads are bounded by the session's max payload."""
        data = raw(code, a=1, b=1) + b"p" * 100
        assert decode(data, max_payload=100).code == code
        assert_rejected(data, max_payload=99)
        assert decode(data).code == code  # 0: unchecked (the protocol objects pass a limit)

    def test_flags_on_hello_are_transports(self) -> None:
        """§2.2: HELLO is the one code whose flags field is used."""
        assert decode(raw(Code.HELLO, flags=0xFFFF, a=1, b=2)) == m.Hello(1, 2, 0xFFFF)


class TestTrailingData:
    """protocol.md §2.3: a datagram is one message; extra bytes are a tail or an error."""

    @pytest.mark.parametrize("event", [s for s in SAMPLES if s.code in NO_TAIL_CODES],
                             ids=lambda e: type(e).__name__)
    def test_whole_then_with_trailing_data(self, event: m.Event) -> None:
        data = encode(event)
        assert decode(data) == event
        assert_rejected(data + b"\0")
        assert_rejected(data + data)

    def test_trailing_data_becomes_the_tail(self) -> None:
        base = encode(m.Error(5, 0, ""))
        assert decode(base + b"more") == m.Error(5, 0, "more")
        base = encode(m.Progress(1, 10))
        assert decode(base + b"\x80") == m.Progress(1, 10, b"\x80")
        base = encode(m.DoneInline(1, 1))
        assert decode(base + b"\xc0") == m.DoneInline(1, 1, b"\xc0")

    def test_invalid_utf8_text_is_replaced_not_rejected(self) -> None:
        event = decode(raw(Code.GOODBYE, a=2) + b"bye \xff\xfe")
        assert isinstance(event, m.Goodbye)
        assert event.reason == 2 and event.text == "bye \ufffd\ufffd"


class TestFieldsAndEncoding:
    def test_unused_fields_are_ignored_on_receipt(self) -> None:
        """§2.2: fields shown as 0 are sent as 0 and ignored when received."""
        assert decode(raw(Code.CLIENT_PID, a=10, b=99)) == m.ClientPid(10)
        assert decode(raw(Code.IPC_TEST, a=1, b=2)) == m.IpcTest()
        assert decode(raw(Code.CANCEL, a=3, b=4)) == m.Cancel(3)
        assert encode(m.ClientPid(10)) == raw(Code.CLIENT_PID, a=10)

    def test_text_tail_truncated_to_max_tail_on_encode(self) -> None:
        """§2.3: encode() cuts ERROR/GOODBYE text at MAX_TAIL bytes."""
        data = encode(m.Error(1, 0, "é" * MAX_TAIL))
        assert len(data) == CONTROL_SIZE + MAX_TAIL
        event = decode(data)
        assert isinstance(event, m.Error)
        assert event.text == "é" * (MAX_TAIL // 2)

    @pytest.mark.parametrize(
        "event",
        [
            m.ClientPid(-1),
            m.ClientPid(U64 + 1),
            m.Execute(1, U64 + 1),
            m.Hello(1, 0, 0x1_0000),
            m.Started(-5, 2),
            m.Progress(1, 1, b"x" * (MAX_TAIL + 1)),
        ],
        ids=repr,
    )
    def test_encode_refuses_out_of_range(self, event: m.Event) -> None:
        """§2.3: out-of-range fields and oversized progress tails are ValueErrors."""
        with pytest.raises(ValueError):
            encode(event)

    def test_encode_refuses_inline_payload_over_limit(self) -> None:
        with pytest.raises(ValueError):
            encode(m.ExecuteInline(1, 1, b"x" * 11), max_payload=10)
        assert len(encode(m.ExecuteInline(1, 1, b"x" * 10), max_payload=10)) == 34

    def test_connection_closed_is_not_a_wire_message(self) -> None:
        """§1: ConnectionClosed is the pseudo-event of an empty read."""
        with pytest.raises(TypeError):
            encode(m.ConnectionClosed())
        assert_rejected(b"")
