r"""Mailslot messages between machines: UDP datagrams (reference 4.13-4.15).

Windows carries remote mailslot messages in SMB browser datagrams on UDP
port 138; Aether uses its own small format on a configurable port, with the
same rules: at most 424 bytes of message (a longer write fails with
ERROR_BAD_NETPATH, reference 4.14), no acknowledgement and no delivery
guarantee (4.15).

Packet: ``b"AEMS" version:u8 name_len:u16 name:utf-8 payload`` where
``name`` is the folded mailslot path (``APP\EVENTS``).

A receiver binds the port with ``SO_REUSEADDR``, so every mailslot that
accepts remote messages on a machine receives every broadcast and keeps
those addressed to it. A unicast datagram reaches only one of them; that
one forwards a message for another name to the local mailslot of that name
(same user), so ``\\host\mailslot\x`` works whoever holds the port.

Remote messages are unauthenticated (threat T39); a mailslot accepts them
only when created with ``accept_remote=True``.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

__all__ = ["REMOTE_MESSAGE_LIMIT", "RemoteConfig", "decode_packet", "encode_packet"]

REMOTE_MESSAGE_LIMIT = 424
_MAGIC = b"AEMS\x01"
_LEN = struct.Struct("<H")
MAX_PACKET = len(_MAGIC) + _LEN.size + 1024 + REMOTE_MESSAGE_LIMIT

ENV_PORT = "AETHER_MAILSLOT_PORT"
ENV_BROADCAST = "AETHER_MAILSLOT_BROADCAST"
ENV_BIND = "AETHER_MAILSLOT_BIND"


@dataclass(frozen=True)
class RemoteConfig:
    r"""Where remote mailslot datagrams go and come from.

    Attributes:
        port: the UDP port every participant uses (default 24138).
        broadcast_address: where ``\\*\\mailslot\\...`` writes go.
        bind_address: the address receivers listen on ("0.0.0.0": all;
            broadcasts reach only sockets bound to it).
    """

    port: int = 24138
    broadcast_address: str = "255.255.255.255"
    bind_address: str = "0.0.0.0"

    @classmethod
    def from_env(cls) -> RemoteConfig:
        """Defaults, overridden by ``AETHER_MAILSLOT_PORT``,
        ``AETHER_MAILSLOT_BROADCAST`` and ``AETHER_MAILSLOT_BIND``."""
        default = cls()
        return cls(
            port=int(os.environ.get(ENV_PORT, default.port)),
            broadcast_address=os.environ.get(ENV_BROADCAST, default.broadcast_address),
            bind_address=os.environ.get(ENV_BIND, default.bind_address),
        )


def encode_packet(folded_path: str, payload: bytes) -> bytes:
    name = folded_path.encode("utf-8")
    return _MAGIC + _LEN.pack(len(name)) + name + payload


def decode_packet(packet: bytes) -> tuple[str, bytes] | None:
    """``(folded_path, payload)``, or None for anything malformed."""
    head = len(_MAGIC) + _LEN.size
    if len(packet) < head or not packet.startswith(_MAGIC):
        return None
    (nlen,) = _LEN.unpack_from(packet, len(_MAGIC))
    if head + nlen > len(packet) or nlen == 0:
        return None
    try:
        name = packet[head:head + nlen].decode("utf-8")
    except UnicodeDecodeError:
        return None
    payload = packet[head + nlen:]
    if len(payload) > REMOTE_MESSAGE_LIMIT:
        return None
    return name, payload
