r"""aether.primitives.mailslots in one process: win32-ipc-semantics.md section 4.

Comments cite reference items ("ref 4.24" = section 4, item 24). Several
processes: test_mailslots_multiprocess.py. Win32 face: tests/win32.

Remote names are tested on loopback only: the broadcast address is set to
127.255.255.255 and unicast goes to 127.0.0.1; nothing is sent elsewhere.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from aether.errors import (
    AlreadyExistsError,
    ClosedResourceError,
    InsufficientBufferError,
    InvalidNameError,
    InvalidParameterError,
    NotFoundError,
    Win32Error,
)
from aether.primitives import _mailslot_store
from aether.primitives._mailslot_names import fold_case
from aether.primitives._mailslot_remote import decode_packet, encode_packet
from aether.primitives.mailslots import (
    FOREVER,
    REMOTE_MESSAGE_LIMIT,
    Mailslot,
    MailslotGoneError,
    MailslotName,
    MailslotTimeoutError,
    MessageTooLargeError,
    RemoteConfig,
    mailslot_status,
    open_mailslot,
)

NAME = r"\\.\mailslot\test\slot"


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "rt"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("AETHER_RUNTIME_DIR", str(path))
    # never let a test fall back to the real broadcast address
    monkeypatch.setenv("AETHER_MAILSLOT_BROADCAST", "127.255.255.255")
    monkeypatch.setenv("AETHER_MAILSLOT_BIND", "127.0.0.1")
    return path


@pytest.fixture
def slot() -> Iterator[Mailslot]:
    with Mailslot.create(NAME, read_timeout=0) as s:
        yield s


@pytest.fixture
def writer(slot: Mailslot) -> Iterator[object]:
    with open_mailslot(NAME) as w:
        yield w


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------
# 4.1 creation and names
# --------------------------------------------------------------------------


class TestNames:
    def test_pseudo_directories(self) -> None:
        # ref 4.1 item 1
        with Mailslot.create(r"\\.\mailslot\abc\def\ghi", read_timeout=0) as s:
            with open_mailslot(r"\\.\mailslot\abc\def\ghi") as w:
                w.write(b"deep")
            assert s.read() == b"deep"

    def test_names_are_case_insensitive(self, slot: Mailslot) -> None:
        # ref 4.1 item 2
        with open_mailslot(r"\\.\MAILSLOT\TEST\Slot") as w:
            w.write(b"any case")
        assert slot.read() == b"any case"
        with pytest.raises(AlreadyExistsError):
            Mailslot.create(r"\\.\Mailslot\TEST\SLOT")

    @pytest.mark.parametrize(
        "bad", ["blah", r"\\.\pipe\x", r"\\.\mailslot\\", r"\\.\mailslot", r"\\.\mailslot\a\\b",
                "\\\\.\\mailslot\\a\x01", r"\\bad host\mailslot\x", ""]
    )
    def test_invalid_names(self, bad: str) -> None:
        # ref 4.1 item 3: ERROR_INVALID_NAME
        with pytest.raises(InvalidNameError) as info:
            Mailslot.create(bad)
        assert info.value.win32_code == Win32Error.ERROR_INVALID_NAME

    def test_second_create_fails(self, slot: Mailslot) -> None:
        # ref 4.1 item 4: ERROR_ALREADY_EXISTS
        with pytest.raises(AlreadyExistsError) as info:
            Mailslot.create(NAME)
        assert info.value.win32_code == Win32Error.ERROR_ALREADY_EXISTS

    def test_name_length_limit(self) -> None:
        # ref 4.1 item 5: names of MAX_PATH (260) or more fail, 206
        prefix = "\\\\.\\mailslot\\"
        ok = prefix + "n" * (259 - len(prefix))
        with Mailslot.create(ok):
            pass
        with pytest.raises(InvalidNameError) as info:
            Mailslot.create(ok + "n")
        assert info.value.win32_code == Win32Error.ERROR_FILENAME_EXCED_RANGE

    @pytest.mark.parametrize("remote", [r"\\*\mailslot\x", r"\\host\mailslot\x"])
    def test_cannot_create_remote(self, remote: str) -> None:
        # ref 4.1 item 6
        with pytest.raises(InvalidNameError):
            Mailslot.create(remote)

    @given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_\\",
                   min_size=1, max_size=60))
    @settings(max_examples=200, deadline=None)
    def test_case_variants_are_one_name(self, path: str) -> None:
        # ref 4.1 item 2 over random ASCII paths
        text = "\\\\.\\mailslot\\" + path
        try:
            a = MailslotName.parse(text)
        except InvalidNameError:
            assert "\\\\" in path or path.startswith("\\") or path.endswith("\\")
            return
        b = MailslotName.parse("\\\\.\\MailSlot\\" + path.swapcase())
        assert a == b and a.key == b.key and hash(a) == hash(b)

    @given(st.text(max_size=300))
    @settings(max_examples=300, deadline=None)
    def test_parse_accepts_or_raises_invalid_name(self, text: str) -> None:
        try:
            name = MailslotName.parse(text)
        except InvalidNameError:
            return
        assert len(name.text) <= MailslotName.MAX_LEN
        assert all(name.path.split("\\"))
        assert len(name.key) == 40

    def test_fold_case_keeps_single_character_mapping(self) -> None:
        assert fold_case("straße") == "STRAßE"

    def test_namespace_is_private(self, slot: Mailslot, runtime_dir: Path) -> None:
        directory = runtime_dir / "mailslots"
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        for entry in os.listdir(directory):
            assert stat.S_IMODE((directory / entry).stat().st_mode) == 0o600


# --------------------------------------------------------------------------
# 4.2 clients and writing
# --------------------------------------------------------------------------


class TestWriting:
    def test_open_missing(self) -> None:
        # ref 4.2 item 11
        with pytest.raises(NotFoundError) as info:
            open_mailslot(r"\\.\mailslot\nobody")
        assert info.value.win32_code == Win32Error.ERROR_FILE_NOT_FOUND

    def test_several_writers_fifo(self, slot: Mailslot) -> None:
        # ref 4.2 items 12 and 16
        with open_mailslot(NAME) as w1, open_mailslot(NAME) as w2:
            w1.write(b"1")
            w2.write(b"2")
            w1.write(b"3")
        assert [slot.read() for _ in range(3)] == [b"1", b"2", b"3"]

    def test_zero_length_message_is_counted(self, slot: Mailslot, writer: object) -> None:
        # ref 4.2 item 17
        assert writer.write(b"") == 0  # type: ignore[attr-defined]
        info = slot.info()
        assert (info.next_size, info.message_count) == (0, 1)
        assert slot.read() == b""
        assert slot.info().message_count == 0

    def test_large_local_message(self, slot: Mailslot, writer: object) -> None:
        # ref 4.2 item 18: no small limit for local messages
        big = os.urandom(200_000)
        writer.write(big)  # type: ignore[attr-defined]
        assert slot.info().next_size == len(big)
        assert slot.read() == big

    def test_max_message_size_enforced_at_write(self) -> None:
        # ref 4.2 item 19 (code unconfirmed on Windows: ERROR_INVALID_PARAMETER here)
        with Mailslot.create(NAME, max_message_size=10, read_timeout=0) as s:
            with open_mailslot(NAME) as w:
                assert w.max_message_size == 10
                w.write(b"x" * 10)
                with pytest.raises(MessageTooLargeError) as info:
                    w.write(b"x" * 11)
                assert (info.value.size, info.value.limit) == (11, 10)
            assert s.info().message_count == 1

    def test_reader_drops_oversized_datagram_from_rogue_writer(self, runtime_dir: Path) -> None:
        # a writer that skips the size check cannot plant a larger message
        with Mailslot.create(NAME, max_message_size=100, read_timeout=0) as s:
            name = MailslotName.parse(NAME)
            _, sock_name = _mailslot_store.lookup(runtime_dir / "mailslots", name)
            raw = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            dir_fd = os.open(runtime_dir / "mailslots", os.O_RDONLY | os.O_DIRECTORY)
            try:  # the path itself is too long for sun_path (see osapi.dgram)
                raw.connect(f"/proc/self/fd/{dir_fd}/{sock_name}")
            finally:
                os.close(dir_fd)
            raw.send(b"y" * 2000)
            raw.send(b"ok")
            raw.close()
            assert s.read(timeout_ms=5000) == b"ok"
            assert s.dropped == 1

    def test_writer_is_not_blocked_by_the_kernel_queue(
        self, slot: Mailslot, writer: object
    ) -> None:
        # issue 3: 10,000 waiting messages of 100 bytes, nobody reading,
        # while the kernel holds only net.unix.max_dgram_qlen (10) datagrams
        done = threading.Event()

        def write_all() -> None:
            for i in range(10_000):
                writer.write(i.to_bytes(4, "little") * 25)  # type: ignore[attr-defined]
            done.set()

        thread = threading.Thread(target=write_all, daemon=True)
        thread.start()
        assert done.wait(30), "a writer blocked although nobody was reading"
        info = slot.info()
        assert (info.message_count, info.next_size) == (10_000, 100)
        for i in range(10_000):
            assert slot.read() == i.to_bytes(4, "little") * 25

    def test_backpressure_loses_nothing(self) -> None:
        # past max_queued_bytes the drain thread pauses; no message is lost
        with Mailslot.create(NAME, read_timeout=5000, max_queued_bytes=1000) as s:
            with open_mailslot(NAME) as w:
                thread = threading.Thread(
                    target=lambda: [w.write(bytes([i]) * 100) for i in range(60)], daemon=True
                )
                thread.start()
                got = [s.read() for _ in range(60)]
                thread.join(10)
            assert got == [bytes([i]) * 100 for i in range(60)]


# --------------------------------------------------------------------------
# 4.3 reading and info
# --------------------------------------------------------------------------


class TestReading:
    def test_one_message_per_read(self, slot: Mailslot, writer: object) -> None:
        # ref 4.3 item 23
        writer.write(b"first")  # type: ignore[attr-defined]
        writer.write(b"second")  # type: ignore[attr-defined]
        assert slot.read() == b"first"
        assert slot.read() == b"second"

    def test_timeout_zero_is_an_error(self, slot: Mailslot) -> None:
        # ref 4.3 item 24: ERROR_SEM_TIMEOUT even for timeout 0
        with pytest.raises(MailslotTimeoutError) as info:
            slot.read()
        assert info.value.win32_code == Win32Error.ERROR_SEM_TIMEOUT
        assert isinstance(info.value, TimeoutError)

    def test_timeout_waits(self, slot: Mailslot) -> None:
        # ref 4.3 item 25: waits about T ms, then ERROR_SEM_TIMEOUT
        slot.read_timeout = 300
        start = time.monotonic()
        with pytest.raises(MailslotTimeoutError):
            slot.read()
        assert time.monotonic() - start >= 0.27

    def test_wait_forever_until_a_message(self, slot: Mailslot, writer: object) -> None:
        # ref 4.3 item 25: MAILSLOT_WAIT_FOREVER blocks until a message arrives
        slot.read_timeout = FOREVER
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(slot.read()), daemon=True)
        reader.start()
        reader.join(0.2)
        assert reader.is_alive() and not got
        writer.write(b"wake")  # type: ignore[attr-defined]
        reader.join(10)
        assert got == [b"wake"]

    def test_buffer_too_small_keeps_message(self, slot: Mailslot, writer: object) -> None:
        # ref 4.3 item 26: ERROR_INSUFFICIENT_BUFFER; the message stays queued
        writer.write(b"0123456789")  # type: ignore[attr-defined]
        with pytest.raises(InsufficientBufferError) as info:
            slot.read(max_size=4)
        assert info.value.win32_code == Win32Error.ERROR_INSUFFICIENT_BUFFER
        assert slot.info().next_size == 10
        assert slot.read(max_size=10) == b"0123456789"

    def test_info_sequence(self, slot: Mailslot, writer: object) -> None:
        # ref 4.3 items 27-28
        info = slot.info()
        assert (info.max_message_size, info.next_size, info.message_count) == (0, None, 0)
        assert info.read_timeout == 0
        writer.write(b"a")  # type: ignore[attr-defined]
        assert (slot.info().next_size, slot.info().message_count) == (1, 1)
        writer.write(b"bc")  # type: ignore[attr-defined]
        assert (slot.info().next_size, slot.info().message_count) == (1, 2)
        assert slot.read() == b"a"
        assert slot.info().next_size == 2
        assert slot.read() == b"bc"
        assert (slot.info().next_size, slot.info().message_count) == (None, 0)

    @pytest.mark.parametrize("size", [0, 1, 424, 0xFFFFFFFF])
    def test_max_message_size_reported_verbatim(self, size: int) -> None:
        # ref 4.1 item 8
        with Mailslot.create(NAME, max_message_size=size) as s:
            assert s.info().max_message_size == size
            assert mailslot_status(NAME).max_message_size == size

    def test_set_read_timeout(self, slot: Mailslot) -> None:
        # ref 4.3 item 29 and ref 4.1 item 9: -1 means forever
        slot.read_timeout = 1500
        assert slot.info().read_timeout == 1500
        slot.read_timeout = -1
        assert slot.read_timeout == FOREVER
        with pytest.raises(InvalidParameterError):
            slot.read_timeout = 1 << 32
        assert slot.info().as_dict()["read_timeout"] == "forever"


# --------------------------------------------------------------------------
# 4.4 lifetime
# --------------------------------------------------------------------------


class TestLifetime:
    def test_close_deletes_mailslot_and_messages(self, runtime_dir: Path) -> None:
        # ref 4.4 item 31
        s = Mailslot.create(NAME)
        with open_mailslot(NAME) as w:
            w.write(b"unread")
        s.close()
        assert os.listdir(runtime_dir / "mailslots") == []
        with pytest.raises(NotFoundError):
            open_mailslot(NAME)
        with Mailslot.create(NAME, read_timeout=0) as again:
            assert again.info().message_count == 0

    def test_writers_fail_after_reader_closes(self) -> None:
        # ref 4.4 item 32 (Windows code unconfirmed; ERROR_NO_DATA here)
        s = Mailslot.create(NAME)
        w = open_mailslot(NAME)
        s.close()
        with pytest.raises(MailslotGoneError) as info:
            w.write(b"late")
        assert info.value.win32_code == Win32Error.ERROR_NO_DATA
        with Mailslot.create(NAME):
            with pytest.raises(MailslotGoneError):  # a new mailslot is another object
                w.write(b"late")
        w.close()
        with pytest.raises(ClosedResourceError):
            w.write(b"closed")

    def test_read_after_close(self) -> None:
        s = Mailslot.create(NAME)
        s.close()
        s.close()
        with pytest.raises(ClosedResourceError):
            s.read()
        with pytest.raises(ClosedResourceError):
            s.info()

    def test_stale_record_of_dead_creator_is_replaced(self, runtime_dir: Path) -> None:
        # rules 3-4 of _mailslot_store: a record nobody holds is stale
        directory = runtime_dir / "mailslots"
        directory.mkdir(mode=0o700, exist_ok=True)
        name = MailslotName.parse(NAME)
        record = _mailslot_store.SlotRecord(0, 1, False, 0, NAME).encode()
        (directory / f"{name.key}.slot").write_bytes(record)
        with pytest.raises(NotFoundError):
            open_mailslot(NAME)
        with Mailslot.create(NAME, read_timeout=0) as s, open_mailslot(NAME) as w:
            w.write(b"fresh")
            assert s.read() == b"fresh"


# --------------------------------------------------------------------------
# remote names over UDP, loopback only (ref 4.2 items 13-15)
# --------------------------------------------------------------------------


class TestRemote:
    def test_unicast_to_host(self) -> None:
        # ref 4.2 item 13: \\host\mailslot\name reaches that machine
        cfg = RemoteConfig(port=free_udp_port(), bind_address="127.0.0.1")
        with Mailslot.create(NAME, read_timeout=5000, accept_remote=True, remote=cfg) as s:
            with open_mailslot(r"\\127.0.0.1\mailslot\TEST\slot", remote=cfg) as w:
                assert w.is_remote
                w.write(b"over udp")
            assert s.read() == b"over udp"
            with open_mailslot(r"\\localhost\mailslot\test\slot", remote=cfg) as w:
                w.write(b"")
            assert s.read() == b""

    def test_broadcast(self) -> None:
        # ref 4.2 item 13: \\*\mailslot\name reaches every listener (loopback broadcast)
        cfg = RemoteConfig(
            port=free_udp_port(), broadcast_address="127.255.255.255", bind_address="0.0.0.0"
        )
        other = r"\\.\mailslot\other"
        with Mailslot.create(NAME, read_timeout=5000, accept_remote=True, remote=cfg) as s, \
                Mailslot.create(other, read_timeout=0, accept_remote=True, remote=cfg) as o:
            with open_mailslot(r"\\*\mailslot\test\slot", remote=cfg) as w:
                w.write(b"to all")
            assert s.read() == b"to all"
            assert o.info().message_count == 0

    def test_unicast_forwarded_between_local_listeners(self) -> None:
        # _mailslot_remote: whichever socket gets a unicast datagram forwards it
        cfg = RemoteConfig(port=free_udp_port(), bind_address="127.0.0.1")
        with Mailslot.create(r"\\.\mailslot\one", read_timeout=5000, accept_remote=True,
                             remote=cfg) as one, \
                Mailslot.create(r"\\.\mailslot\two", read_timeout=5000, accept_remote=True,
                                remote=cfg) as two:
            with open_mailslot(r"\\127.0.0.1\mailslot\one", remote=cfg) as w:
                w.write(b"for one")
            with open_mailslot(r"\\127.0.0.1\mailslot\two", remote=cfg) as w:
                w.write(b"for two")
            assert one.read() == b"for one"
            assert two.read() == b"for two"
            assert (one.info().message_count, two.info().message_count) == (0, 0)

    def test_remote_limit_424(self) -> None:
        # ref 4.2 item 14: more than 424 bytes -> ERROR_BAD_NETPATH
        cfg = RemoteConfig(port=free_udp_port(), broadcast_address="127.255.255.255")
        with open_mailslot(r"\\*\mailslot\x", remote=cfg) as w:
            assert w.write(b"x" * REMOTE_MESSAGE_LIMIT) == 424
            with pytest.raises(MessageTooLargeError) as info:
                w.write(b"x" * 425)
            assert info.value.win32_code == Win32Error.ERROR_BAD_NETPATH

    def test_remote_not_accepted_by_default(self) -> None:
        # threat T39: a mailslot takes network messages only if asked to
        cfg = RemoteConfig(port=free_udp_port(), bind_address="127.0.0.1")
        with Mailslot.create(NAME, read_timeout=0, remote=cfg) as s:
            assert not mailslot_status(NAME).accepts_remote
            with open_mailslot(r"\\127.0.0.1\mailslot\test\slot", remote=cfg) as w:
                w.write(b"ignored")
            assert s.info().message_count == 0

    def test_unresolvable_host(self) -> None:
        with pytest.raises(NotFoundError) as info:
            open_mailslot(r"\\no-such-host.invalid\mailslot\x")
        assert info.value.win32_code == Win32Error.ERROR_BAD_NETPATH

    @given(st.text(max_size=40).filter(lambda s: s), st.binary(max_size=REMOTE_MESSAGE_LIMIT))
    @settings(max_examples=100, deadline=None)
    def test_packet_round_trip(self, path: str, payload: bytes) -> None:
        try:
            packet = encode_packet(path, payload)
        except UnicodeEncodeError:
            return
        assert decode_packet(packet) == (path, payload)

    @given(st.binary(max_size=600))
    @settings(max_examples=200, deadline=None)
    def test_garbage_packets_are_rejected_or_bounded(self, packet: bytes) -> None:
        decoded = decode_packet(packet)
        if decoded is not None:
            assert len(decoded[1]) <= REMOTE_MESSAGE_LIMIT
