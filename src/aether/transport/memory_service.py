"""The seed's memory transport, service side: verify the client, check its
blocks, run the pattern test, then move parameters and results through the
client's own memory.

Identity comes from the kernel, never from the message (threat T1): the
claimed pid must equal ``SO_PEERCRED``'s, the pidfd comes from
``SO_PEERPIDFD`` (no pid-reuse window, T3), and ``/proc/<pid>/mem`` is opened
once and checked against the pidfd right after (T4). All later I/O goes
through that descriptor, which reaches nothing after the client exits or
``execve``s (T6). Blocks must lie in private anonymous non-executable
mappings, and every transfer is bounds-checked against the two registered
blocks (T10-T12). Parameters are copied once and only the copy is validated
(T14).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from aether import osapi, wire
from aether.errors import AetherError, OSAPIError, RemoteProtocolError
from aether.wire import BlockSpec, ErrorCode, ParamHeader, ReturnHeader

_PATTERN_WORD = wire.PATTERN.to_bytes(4, "little")


def _chunks(size: int, chunk: int) -> Iterator[tuple[int, int]]:
    for start in range(0, size, chunk):
        yield start, min(chunk, size - start)


@dataclass
class HandshakeFailure(Exception):
    """A step of the handshake failed; ``code`` goes into TEST_DONE or ERROR."""

    code: ErrorCode
    text: str

    def __str__(self) -> str:
        return f"{self.code.name}: {self.text}"


class MemoryServiceSide:
    """Per-session state of the memory transport in the service."""

    def __init__(
        self, *, peer: osapi.PeerCredentials, pidfd: int, max_block: int
    ) -> None:
        self.peer = peer
        self.pidfd = pidfd
        self.max_block = max_block
        self.memory: osapi.ProcessMemory | None = None
        self.param: BlockSpec | None = None
        self.retn: BlockSpec | None = None
        self._pending_param: BlockSpec | None = None
        # Reused for every request: large fresh buffers cost a page fault per
        # page, more than the copy itself.
        self._buffer = bytearray()

    # -- handshake ----------------------------------------------------------
    def accept_pid(self, claimed: int) -> None:
        """Step H3: the claimed pid must be the kernel-reported peer."""
        if claimed != self.peer.pid:
            raise HandshakeFailure(
                ErrorCode.PID_MISMATCH,
                f"claimed pid {claimed} is not the connecting process",
            )
        if _pidfd_pid(self.pidfd) not in (self.peer.pid, None):
            raise HandshakeFailure(ErrorCode.PID_MISMATCH, "pidfd does not match the peer")
        try:
            memory = osapi.ProcessMemory(claimed)
        except OSAPIError as exc:
            raise HandshakeFailure(ErrorCode.MEMORY_ACCESS, f"cannot open client memory: {exc}") \
                from None
        # The fd is bound to the image the process runs *now*. If it exec'd a
        # set-id program between connect() and H3, that image runs with other
        # credentials than the connection's: refuse it (threat T6, exec before
        # the handshake). Checked after the open: an exec after it leaves the
        # fd reaching nothing.
        changed = _credentials_changed(claimed, self.peer)
        if changed:
            memory.close()
            raise HandshakeFailure(ErrorCode.PID_MISMATCH, changed)
        # A non-dumpable image (set-uid, set-gid or file-capability exec, or
        # PR_SET_DUMPABLE 0) has its /proc/<pid>/mem owned by root: the kernel
        # would refuse anyone but a privileged tracer. We refuse it too rather
        # than write into it as root (threats T6, T7).
        owner = memory.owner_uid()
        if owner != self.peer.uid:
            memory.close()
            raise HandshakeFailure(
                ErrorCode.MEMORY_ACCESS,
                f"the client process is not dumpable (its memory belongs to uid {owner}, "
                f"not {self.peer.uid}); use the socket transport",
            )
        # Opened after the pidfd: if the process is still alive now, the
        # descriptor belongs to it and not to a later process with its pid.
        if osapi.pidfd_exited(self.pidfd):
            memory.close()
            raise HandshakeFailure(ErrorCode.PEER_EXITED, "client exited during the handshake")
        if self.memory is not None:
            self.memory.close()
        self.memory = memory

    def accept_param(self, address: int, size: int) -> None:
        """Step H4 (and O6): record the parameter block after pure checks."""
        block = BlockSpec(address, size)
        self._check(block)
        self._pending_param = block

    def accept_retn(self, address: int, size: int) -> None:
        """Step H5: record the return block; check both against the maps."""
        block = BlockSpec(address, size)
        self._check(block)
        if self._pending_param is None:
            raise HandshakeFailure(ErrorCode.PROTOCOL, "ADDR_RETN before ADDR_PARAM")
        code, text = wire.check_pair(self._pending_param, block)
        if code:
            raise HandshakeFailure(code, text)
        maps = _read_maps(self.peer.pid)
        _check_in_maps(self._pending_param, maps, "parameter")
        _check_in_maps(block, maps, "return")
        assert self.memory is not None
        self.memory.clear_regions()
        self.memory.register(osapi.Region(self._pending_param.address, self._pending_param.size))
        self.memory.register(osapi.Region(block.address, block.size))
        self.param, self.retn = self._pending_param, block
        self._pending_param = None

    def pattern_test(self) -> None:
        """Step H6-H7: both blocks hold only the pattern; overwrite with zeros.

        A chunk at a time, through one reused buffer: a client's blocks may
        be as large as ``max_block_size``, and reading or zeroing them whole
        would cost the service several times that in temporaries per
        handshake (a cheap way for a hostile client to inflate it)."""
        assert self.memory is not None and self.param and self.retn
        memory = self.memory
        chunk = min(osapi.CHUNK, max(self.param.size, self.retn.size))
        pattern = _PATTERN_WORD * (chunk // 4)
        buffer = bytearray(chunk)
        for name, block in (("parameter", self.param), ("return", self.retn)):
            for start, n in _chunks(block.size, chunk):
                into = buffer if n == chunk else bytearray(n)
                try:
                    memory.readinto(block.address + start, into)
                except OSAPIError as exc:
                    raise HandshakeFailure(ErrorCode.MEMORY_ACCESS,
                                           f"{name} block: {exc}") from None
                if into != pattern[:n]:
                    raise HandshakeFailure(
                        ErrorCode.PATTERN_MISMATCH, f"{name} block does not hold 0x1337D00D"
                    )
        zeros = memoryview(bytes(chunk))
        for block in (self.param, self.retn):
            for start, n in _chunks(block.size, chunk):
                try:
                    memory.write(block.address + start, zeros[:n])
                except OSAPIError as exc:
                    raise HandshakeFailure(ErrorCode.MEMORY_ACCESS,
                                           f"writing zeros: {exc}") from None

    def _check(self, block: BlockSpec) -> None:
        code, text = wire.check_block(block, page_size=osapi.PAGE_SIZE, max_size=self.max_block)
        if code:
            raise HandshakeFailure(code, text)

    # -- operations ---------------------------------------------------------
    def read_params(self, op_id: int, length: int) -> tuple[int, memoryview]:
        """Step O2: copy header and payload once; validate only the copy.

        Returns (op_code, payload). The payload is a view of a buffer this
        session reuses for its next request: decode it before then. Raises
        RemoteProtocolError for a header that does not match EXECUTE, or
        AetherError when memory is gone.
        """
        assert self.memory is not None and self.param is not None
        if length > self.param.capacity:
            raise RemoteProtocolError(
                f"EXECUTE length {length} exceeds the parameter block ({self.param.capacity})",
                event="Execute",
            )
        total = wire.HEADER_SIZE + length
        if len(self._buffer) < total:
            self._buffer = bytearray(total)
        raw = memoryview(self._buffer)[:total]
        self.memory.readinto(self.param.address, raw)
        header = ParamHeader.unpack(raw)
        code, text = wire.check_param_header(
            header, expected_op_id=op_id, op_code=None, capacity=self.param.capacity
        )
        if code:
            raise RemoteProtocolError(text, event="Execute")
        if header.length != length:
            raise RemoteProtocolError(
                f"header length {header.length} differs from EXECUTE's {length}", event="Execute"
            )
        payload = raw[wire.HEADER_SIZE:]
        if wire.crc32(payload) != header.crc:
            raise RemoteProtocolError("parameter payload fails its crc32", event="Execute")
        return header.op_code, payload

    @property
    def buffer_size(self) -> int:
        return len(self._buffer)

    def trim(self) -> None:
        """Release the request buffer (it grows again on demand)."""
        self._buffer = bytearray()

    @property
    def result_capacity(self) -> int:
        assert self.retn is not None
        return self.retn.capacity

    def write_status(self, op_id: int, status: int, payload: bytes | memoryview = b"",
                     progress: int = 0) -> None:
        """Write a payload then its header into the return block (step O2/O4),
        or both in one write when they fit in the block's first page
        (protocol.md §5: one copy within a page, which no crash can split)."""
        assert self.memory is not None and self.retn is not None
        if len(payload) > self.retn.capacity:
            raise ValueError("payload larger than the return block")
        header = ReturnHeader.for_payload(op_id, status, payload, progress).pack()
        if not payload:
            self.memory.write(self.retn.address, header)
        elif wire.HEADER_SIZE + len(payload) <= osapi.PAGE_SIZE:
            # One /proc/<pid>/mem write instead of two (5-10 µs each inside
            # a round trip on this class of VM).
            self.memory.write(self.retn.address, header + payload)
        else:
            self.memory.write(self.retn.address + wire.HEADER_SIZE, payload)
            self.memory.write(self.retn.address, header)

    def write_progress(self, op_id: int, permille: int) -> None:
        """Update only the progress field of the return header."""
        assert self.memory is not None and self.retn is not None
        header = ReturnHeader.for_payload(op_id, wire.Status.STARTED, b"", permille)
        self.memory.write(self.retn.address, header.pack())

    def close(self) -> None:
        if self.memory is not None:
            self.memory.close()
            self.memory = None


def _pidfd_pid(pidfd: int) -> int | None:
    """The pid a pidfd refers to, from /proc/self/fdinfo (None if unknown)."""
    try:
        with open(f"/proc/self/fdinfo/{pidfd}", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Pid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _credentials_changed(pid: int, peer: osapi.PeerCredentials) -> str:
    """Why the process's current image is not the one that connected ("" if it is).

    ``SO_PEERCRED`` recorded the effective uid and gid at connect(); an exec
    of a set-uid or set-gid program changes them. (A file-capability exec
    keeps them; the kernel records no capabilities at connect to compare.)
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            fields = {k: v.split() for k, _, v in (line.partition(":") for line in fh)}
        euid, egid = int(fields["Uid"][1]), int(fields["Gid"][1])
    except (OSError, KeyError, IndexError, ValueError) as exc:
        return f"cannot read the client's credentials: {exc}"
    if (euid, egid) != (peer.uid, peer.gid):
        return (f"the client now runs as uid {euid} gid {egid}, but connected as uid "
                f"{peer.uid} gid {peer.gid} (exec of a set-id program?)")
    return ""


def _read_maps(pid: int) -> list[osapi.MemoryMapping]:
    try:
        return osapi.read_maps(pid)
    except AetherError as exc:
        raise HandshakeFailure(ErrorCode.MEMORY_ACCESS, f"cannot read maps: {exc}") from None


def _check_in_maps(block: BlockSpec, maps: list[osapi.MemoryMapping], name: str) -> None:
    covering = osapi.mappings_covering(maps, block.address, block.size)
    if not covering:
        raise HandshakeFailure(ErrorCode.BAD_BLOCK, f"{name} block is not mapped")
    if len(covering) != 1 or not covering[0].contains(block.address, block.size):
        raise HandshakeFailure(
            ErrorCode.BAD_BLOCK, f"{name} block is not inside one mapping"
        )
    mapping = covering[0]
    if mapping.executable:
        raise HandshakeFailure(ErrorCode.BAD_BLOCK, f"{name} block is executable")
    if not mapping.private or not mapping.anonymous:
        raise HandshakeFailure(
            ErrorCode.BAD_BLOCK,
            f"{name} block must be private anonymous memory (found {mapping.perms} "
            f"{mapping.path or 'inode ' + str(mapping.inode)})",
        )
