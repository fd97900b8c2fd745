"""A raw client that stops at a given point and waits there to be killed.

argv: SOCKET STAGE [TREE]. STAGE is one of
  hello      connected, HELLO read (H1/H2)
  client_pid CLIENT_PID sent (H3)
  addr_retn  CLIENT_PID, ADDR_PARAM, ADDR_RETN sent (H3-H5)
  op         handshake done, EXECUTE guard.hash_tree TREE sent, STARTED and a
             first PROGRESS received (O1-O3)
Prints {"stage", "pid", "param", "retn"} and then blocks reading stdin.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rawpeer import Arena, RawPeer, die_after, report

from aether.schema import encode, spec_of
from aether.wire import Status, messages as m
from aether_guard.schema import HashTree


def main() -> None:
    die_after(60)
    path, stage = sys.argv[1], sys.argv[2]
    arena = Arena()
    peer = RawPeer(path)
    if stage == "op":
        peer.handshake(arena)
        payload = encode(HashTree(root=sys.argv[3]))
        arena.write_params(1, spec_of(HashTree).code, payload)
        peer.send(m.Execute(1, len(payload)))
        started = peer.expect(m.Started)
        if started.status != Status.STARTED:
            report(fatal=f"hash_tree not started: {started}")
            return
        peer.expect(m.Progress)
    else:
        peer.hello()
        if stage in ("client_pid", "addr_retn"):
            peer.send(m.ClientPid(os.getpid()))
        if stage == "addr_retn":
            peer.send(m.AddrParam(arena.param, arena.param_size))
            peer.send(m.AddrRetn(arena.retn, arena.retn_size))
    report(stage=stage, pid=os.getpid(), param=arena.param, retn=arena.retn)
    sys.stdin.read()


main()
