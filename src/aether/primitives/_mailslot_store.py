"""Where a mailslot lives: a record file and a socket, owned by the creator.

Rules:

1. A mailslot ``K`` (the hash of its folded name) is a record ``K.slot`` in
   the per-user ``mailslots`` directory, plus an AF_UNIX datagram socket
   ``K-<record inode>.sock``. The socket name carries the record's inode, so
   two racing creators never bind the same socket and writers always reach
   the socket of the record they read.
2. The creator takes an exclusive ``flock`` on the record *before* linking
   it under its name and holds it for life; the kernel drops it when the
   creator dies. So "someone holds the record exclusively" means "the
   mailslot is alive".
3. Writers probe with a shared lock without waiting: if they get it, the
   creator is gone and the mailslot does not exist (reference 4.11, 4.31).
4. A creator that finds a stale record converts a probe into an exclusive
   lock and removes record and socket; a record that is alive makes
   creation fail with ERROR_ALREADY_EXISTS (reference 4.4).
5. The creator, on close, unlinks its record (new writers then fail) and
   its socket, then lets go.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from aether.errors import (
    AccessDeniedError,
    AlreadyExistsError,
    BusyResourceError,
    InvalidParameterError,
    NotFoundError,
    OSAPIError,
    PrimitiveError,
)
from aether.osapi import dgram, namedfiles as nf

from ._mailslot_names import MailslotName

__all__ = ["SlotOwnership", "SlotRecord", "create", "lookup"]

_MAGIC = b"AEMSLOT\x01"
_FIXED = struct.Struct("<8sIIIIHH")  # magic version maxsize pid flags port namelen
_FLAG_REMOTE = 1
_RECORD_SIZE = 4096
_RETRIES = 16


@dataclass(frozen=True)
class SlotRecord:
    """What writers learn about a mailslot from its record."""

    max_message_size: int
    creator_pid: int
    accepts_remote: bool
    udp_port: int
    name: str

    def encode(self) -> bytes:
        raw = self.name.encode("utf-8")
        flags = _FLAG_REMOTE if self.accepts_remote else 0
        return _FIXED.pack(
            _MAGIC, 1, self.max_message_size, self.creator_pid, flags, self.udp_port, len(raw)
        ) + raw

    @classmethod
    def decode(cls, data: bytes) -> SlotRecord:
        if len(data) < _FIXED.size:
            raise ValueError("mailslot record truncated")
        magic, ver, maxsize, pid, flags, port, nlen = _FIXED.unpack_from(data)
        if magic != _MAGIC or ver != 1 or _FIXED.size + nlen > len(data):
            raise ValueError("not a mailslot record")
        name = data[_FIXED.size:_FIXED.size + nlen].decode("utf-8")
        return cls(maxsize, pid, bool(flags & _FLAG_REMOTE), port, name)


def socket_name(key: str, inode: int) -> str:
    return f"{key}-{inode:x}.sock"


class SlotOwnership:
    """The creator's exclusive hold on a mailslot's name (rule 2)."""

    def __init__(self, fd: int, directory: Path, key: str, sock_name: str) -> None:
        self.fd = fd
        self.directory = directory
        self.record_path = directory / f"{key}.slot"
        self.socket_name = sock_name
        self._pid = os.getpid()

    def release(self) -> None:
        """Remove the mailslot's record and socket (rule 5). Idempotent."""
        fd, self.fd = self.fd, -1
        if fd < 0:
            return
        try:
            if os.getpid() == self._pid:
                if nf.still_named(fd, self.record_path):
                    nf.unlink_quietly(self.record_path)
                nf.unlink_quietly(self.directory / self.socket_name)
        except OSAPIError:
            pass  # the next creator removes what is left (rule 4)
        finally:
            nf.close_quietly(fd)


def _primitive(exc: OSAPIError, what: str) -> PrimitiveError:
    if exc.errno in (13, 1):
        return AccessDeniedError(f"{what}: {exc}")
    if exc.errno == 2:
        return NotFoundError(f"{what}: {exc}")
    return InvalidParameterError(f"{what}: {exc}")


def create(
    directory: Path, name: MailslotName, record: SlotRecord
) -> tuple[SlotOwnership, socket.socket]:
    """Create the mailslot's record and bound socket.

    Raises:
        AlreadyExistsError: a live mailslot has this name (reference 4.4).
    """
    key = name.key
    final = directory / f"{key}.slot"
    header = record.encode().ljust(_RECORD_SIZE, b"\0")
    for _ in range(_RETRIES):
        try:
            fd, tmp = nf.create_unlinked(directory)
        except OSAPIError as exc:
            raise _primitive(exc, f"create mailslot {name}") from None
        sock = None
        try:
            nf.lock_exclusive(fd)  # a fresh inode: granted at once (rule 2)
            nf.pwrite_all(fd, header, 0)
            sock_name = socket_name(key, nf.file_identity(fd)[1])
            nf.unlink_quietly(directory / sock_name)  # debris of a crash, same inode number
            sock = dgram.bind_unix_dgram(directory, sock_name)
            if nf.link_exclusive(fd, tmp, final):
                return SlotOwnership(fd, directory, key, sock_name), sock
            sock.close()
            nf.unlink_quietly(directory / sock_name)
        except OSAPIError as exc:
            if sock is not None:
                sock.close()
            nf.close_quietly(fd)
            raise _primitive(exc, f"create mailslot {name}") from None
        except BaseException:
            if sock is not None:
                sock.close()
            nf.close_quietly(fd)
            raise
        nf.close_quietly(fd)
        if _alive_or_remove(directory, key):
            raise AlreadyExistsError(f"a mailslot named {name.text!r} already exists")
    raise BusyResourceError(f"mailslot {name.text!r} keeps appearing and vanishing")


def _alive_or_remove(directory: Path, key: str) -> bool:
    """True if the record ``key`` belongs to a live creator; else remove it."""
    final = directory / f"{key}.slot"
    try:
        fd = nf.open_nofollow(final)
    except OSAPIError as exc:
        if exc.errno == 2:
            return False
        raise _primitive(exc, "open mailslot record") from None
    try:
        if not nf.try_lease_shared(fd):
            return True  # its creator holds it exclusively (rule 3)
        nf.lock_exclusive(fd)  # waits only for other probes (rule 4)
        if nf.still_named(fd, final):
            inode = nf.file_identity(fd)[1]
            nf.unlink_quietly(directory / socket_name(key, inode))
            nf.unlink_quietly(final)
        return False
    except OSAPIError as exc:
        raise _primitive(exc, "check mailslot record") from None
    finally:
        nf.close_quietly(fd)


def lookup(directory: Path, name: MailslotName) -> tuple[SlotRecord, str]:
    """The record and socket name of a live mailslot.

    Raises:
        NotFoundError: no mailslot, or its creator is gone (reference 4.11).
    """
    final = directory / f"{name.key}.slot"
    try:
        fd = nf.open_nofollow(final)
    except OSAPIError as exc:
        if exc.errno == 2:
            raise NotFoundError(f"no mailslot named {name.text!r}") from None
        raise _primitive(exc, f"open mailslot {name.text!r}") from None
    try:
        if nf.try_lease_shared(fd):
            raise NotFoundError(f"no mailslot named {name.text!r} (its creator is gone)")
        data = nf.pread_exact(fd, _RECORD_SIZE, 0)
        inode = nf.file_identity(fd)[1]
    except OSAPIError as exc:
        raise _primitive(exc, f"open mailslot {name.text!r}") from None
    finally:
        nf.close_quietly(fd)
    try:
        record = SlotRecord.decode(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotFoundError(f"mailslot {name.text!r} has a corrupt record: {exc}") from None
    return record, socket_name(name.key, inode)
