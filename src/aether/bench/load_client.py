"""The client side of ``aether bench load``: what each forked client process
does, and how each call's outcome is judged and written down."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

from aether.client import Client
from aether.errors import (
    AetherError,
    AetherTimeoutError,
    ClosedResourceError,
    ConnectError,
    HandshakeError,
    OperationError,
    OutcomeUnknownError,
    PeerGoneError,
)
from aether.schema import builtins

from . import load_schema as ls
from .load_procs import ChildLink
from .load_records import RECORD, Kind, Outcome, client_file

# Between two attempts to reach a service that is not there (it is being
# restarted): short, so recovery is measured to a few milliseconds.
RECONNECT_PAUSE = 0.005
# Kinds of call in the soak's mixed traffic, with their weights.
SOAK_MIX = ((Kind.ECHO, 70), (Kind.WORK, 10), (Kind.CANCEL, 10), (Kind.FAIL, 5),
            (Kind.STATUS, 5))
# Payload sizes of the soak's echo calls (bytes).
SOAK_SIZES = (0, 16, 256, 4096, 65536)
# Blocks with room for the largest reply: a reply that does not fit is the
# service's RESULT_TOO_LARGE after it committed the call, which is the
# protocol working but not what the soak measures.
BLOCK_SIZE = 256 * 1024


class Session:
    """One client process's session with the service, reopened when lost."""

    def __init__(self, path: str, transport: str, cid: int, *, call_timeout: float,
                 errors: Path | None = None) -> None:
        self.path = path
        self.errors = errors
        self.transport = transport
        self.cid = cid
        self.call_timeout = call_timeout
        self.client: Client | None = None
        self.service_pid = 0

    def connect(self, timeout: float = 30.0) -> Client:
        """A live session, reconnecting (every few ms) until ``timeout``."""
        if self.client is not None:
            return self.client
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client = Client(self.path, schema=ls.schema, transport=self.transport,
                                     timeout=min(5.0, timeout), block_size=BLOCK_SIZE)
                self.service_pid = self.client.service_pid
                return self.client
            except (ConnectError, HandshakeError, PeerGoneError) as exc:
                if time.monotonic() >= deadline:
                    raise AetherTimeoutError(f"no session within {timeout} s: {exc}") from None
                time.sleep(RECONNECT_PAUSE)

    def drop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def call(self, kind: Kind, seq: int, rng: random.Random,
             payload: bytes | None = None) -> tuple[Outcome, int]:
        """Make one call of ``kind``; its outcome and latency in ns. A call that
        leaves the session unusable drops it (the next call reconnects)."""
        client = self.connect()
        t0 = time.monotonic_ns()
        error: BaseException | None = None
        try:
            outcome = self._run(client, kind, seq, rng, payload)
        except OutcomeUnknownError as exc:
            outcome, error = Outcome.UNKNOWN, exc
        except OperationError as exc:
            if exc.status_name == "CANCELLED" and kind is Kind.CANCEL:
                outcome = Outcome.CANCELLED
            elif exc.status_name == "FAILED" and kind is Kind.FAIL:
                outcome = Outcome.OK
            else:
                outcome, error = Outcome.FAILED, exc
        except AetherTimeoutError as exc:
            outcome, error = Outcome.TIMEOUT, exc
        except (ClosedResourceError, PeerGoneError) as exc:
            outcome, error = Outcome.NOT_SENT, exc
        latency = time.monotonic_ns() - t0
        if error is not None and self.errors is not None:
            # What went wrong, for the report: the records keep only the outcome.
            line = f"{time.monotonic_ns()} {seq} {kind.name} {outcome.name} " \
                   f"{self.client.transport if self.client else '-'} " \
                   f"{type(error).__name__}: {error}\n"
            with open(self.errors, "a", encoding="utf-8") as fh:
                fh.write(line)
        if outcome in (Outcome.UNKNOWN, Outcome.TIMEOUT, Outcome.NOT_SENT) or client.closed:
            self.drop()
        return outcome, latency

    def _run(self, client: Client, kind: Kind, seq: int, rng: random.Random,
             payload: bytes | None) -> Outcome:
        cid = self.cid
        reply: Any
        if kind is Kind.ECHO:
            data = payload if payload is not None else b""
            reply = client.call(ls.LoadEcho(client=cid, seq=seq, data=data),
                                timeout=self.call_timeout)
            return _judge(reply, cid, seq, data=data)
        if kind is Kind.WORK:
            steps = rng.randint(2, 8)
            seen: list[int] = []
            op = client.start(ls.LoadWork(client=cid, seq=seq, steps=steps, delay=0.002),
                              on_progress=lambda o: seen.append(o.permille))
            reply = op.wait(self.call_timeout)
            if seen != sorted(seen) or any(p > 1000 for p in seen):
                return Outcome.MISMATCH
            return _judge(reply, cid, seq, steps=steps)
        if kind is Kind.CANCEL:
            op = client.start(ls.LoadWork(client=cid, seq=seq, steps=10, delay=0.002))
            try:
                reply = op.wait(rng.uniform(0.0, 0.03))
            except AetherTimeoutError:
                op.cancel()
                reply = op.wait(self.call_timeout)
            return _judge(reply, cid, seq, steps=10)
        if kind is Kind.FAIL:
            client.call(ls.LoadFail(client=cid, seq=seq), timeout=self.call_timeout)
            return Outcome.MISMATCH  # it must not succeed
        status = client.call(builtins.Status(), timeout=self.call_timeout)
        return Outcome.OK if status.pid == client.service_pid else Outcome.MISMATCH


def _judge(reply: Any, cid: int, seq: int, *, data: bytes = b"", steps: int = 0) -> Outcome:
    ok = (isinstance(reply, ls.Reply) and reply.client == cid and reply.seq == seq
          and reply.data == data and reply.steps == steps)
    return Outcome.OK if ok else Outcome.MISMATCH


def load_body(path: str, transport: str, cid: int, calls: int, payload: int,
              records: Path, seed: int, rate: float = 0.0, call_timeout: float = 60.0) -> Any:
    """A load client: connect, say ready, wait for the word, make ``calls``
    echo calls, write the records, report.

    With ``rate`` 0 the calls go back to back (a closed loop: the client
    always has a call waiting). With a ``rate`` (calls/s) each call starts
    on a schedule, from a random phase, whatever the previous one took: the
    offered load then stays fixed, which is how latency at a given fraction
    of capacity is measured. Latency runs from the moment the call is made.
    """

    def body(link: ChildLink) -> int:
        rng = random.Random(seed)
        session = Session(path, transport, cid, call_timeout=call_timeout,
                          errors=records / f"client-{cid}.err")
        try:
            client = session.connect(timeout=60.0)
        except AetherError as exc:
            link.send(error=f"{type(exc).__name__}: {exc}")
            return 3
        link.send(ready=True, transport=client.transport)
        go = link.wait()
        interval = 1 / rate if rate > 0 else 0.0
        next_at = go.get("go", time.monotonic()) + rng.uniform(0, interval)
        out = bytearray()
        pack = RECORD.pack
        for seq in range(calls):
            data = rng.randbytes(payload)
            if interval:
                # Pacing, not synchronisation: wait for this call's turn.
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_at += interval
            try:
                outcome, latency = session.call(Kind.ECHO, seq, rng, data)
            except AetherError:  # could not even reconnect
                outcome, latency = Outcome.NOT_SENT, 0
            out += pack(seq, Kind.ECHO, outcome, latency, time.monotonic_ns())
        client_file(records, cid).write_bytes(out)
        session.drop()
        link.send(done=True)
        return 0

    return body


def soak_body(path: str, transport: str, cid: int, records: Path, seed: int,
              call_timeout: float = 10.0) -> Any:
    """A soak client: mixed calls until the harness says stop (or is gone) or
    kills it, reconnecting whenever the service goes away. Each record is
    written as soon as the call ends, so a SIGKILL loses at most the call in
    flight."""

    def body(link: ChildLink) -> int:
        rng = random.Random(seed)
        session = Session(path, transport, cid, call_timeout=call_timeout,
                          errors=records / f"client-{cid}.err")
        kinds = [k for k, _ in SOAK_MIX]
        weights = [w for _, w in SOAK_MIX]
        fd = os.open(client_file(records, cid), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        seq = 0
        while not link.stop_requested():
            kind = rng.choices(kinds, weights)[0]
            data = rng.randbytes(rng.choice(SOAK_SIZES)) if kind is Kind.ECHO else None
            try:
                outcome, latency = session.call(kind, seq, rng, data)
            except AetherError:  # the service stayed away longer than connect's bound
                continue
            os.write(fd, RECORD.pack(seq, kind, outcome, latency, time.monotonic_ns()))
            seq += 1
        session.drop()
        return 0

    return body
