"""A raw mapping-transport client for hostile tests: it speaks the handshake
with aether.wire and then touches the shared region directly, honestly or not."""

from __future__ import annotations

import os
import socket

import msgspec

from aether import osapi, wire
from aether.errors import AetherTimeoutError
from aether.transport.channel import Channel
from aether.transport.mapping import MappedRegion
from aether.wire import FrameKind, messages as m, rings


class RawMapPeer:
    def __init__(self, path: os.PathLike[str] | str, ring_size: int = 64 * 1024,
                 extra_fds: list[int] | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.connect(str(path))
        self.channel = Channel(self.sock, max_datagram=1 << 16)
        self.proto = wire.ClientProtocol()
        self.proto.receive(self.channel.recv(5))  # HELLO
        data = self.proto.send(m.MapMode(ring_size))
        if extra_fds:
            self.channel.send_with_fds(data, extra_fds)
        else:
            self.channel.send(data)
        raw, fds = self.channel.recv_with_fds(5, 3)
        ready = self.proto.receive(raw)
        assert isinstance(ready, m.MapReady), ready
        self.fds = fds
        self.region = MappedRegion(os.dup(fds[0]), ready.ring_size)
        self.ctl = self.region.ctl
        self.request_efd = fds[1]
        self.writer = rings.request_writer(self.ctl, self.region.request_bytes)
        self.reader = rings.reply_reader(self.ctl, self.region.reply_bytes)
        self.channel.send(self.proto.send(m.TestVerified(0)))
        self.op_id = 0

    def execute(self, code: int, params: object) -> int:
        self.op_id += 1
        self.writer.put(FrameKind.EXECUTE, self.op_id, code, msgspec.msgpack.encode(params))
        self.ring()
        return self.op_id

    def ring(self) -> None:
        osapi.eventfd_signal(self.request_efd)

    def closed_by_service(self, timeout: float) -> bool:
        """True once the service hung up (after an ERROR, if it sent one)."""
        try:
            while True:
                data = self.channel.recv(timeout)
                if not data:
                    return True
        except AetherTimeoutError:
            return False
        except Exception:
            return True

    def close(self) -> None:
        self.region.close()
        for fd in self.fds:
            osapi.close_fd(fd)
        self.channel.close()
