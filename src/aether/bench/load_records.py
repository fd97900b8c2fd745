"""What the load clients and the load service write down, and the
accounting that compares the two.

Each client process appends one fixed-size record per call to its own file
(``client-<id>.bin``): sequence number, operation kind, outcome, latency and
the monotonic time the call ended (``CLOCK_MONOTONIC`` is one clock for every
process, so the harness can line calls up with service restarts). The
service appends ``(client, seq)`` to its journal for every operation it
committed (:mod:`aether.bench.load_service`). Files, not pipes: a client or a
service killed with SIGKILL loses nothing it wrote, and the accounting works
after the fact.

The accounting, per (client, seq):

- *lost*: the client sent the call and never learnt its outcome as success,
  although nothing was killed (load runs), or the service committed it and
  the client, never killed, has no record of a result;
- *duplicated*: the service committed it more than once;
- *mismatched*: a result came back that is not the request's (another
  client's, another sequence number, other bytes);
- *false success*: the client counted a success the service never committed
  (outcome unknown must never be reported as success);
- *cancelled but committed*: the client was told CANCELLED for an operation
  the service did complete.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .load_service import JOURNAL

RECORD = struct.Struct("<IBBxxQQ")  # seq, kind, outcome, latency ns, end (monotonic ns)


class Kind(enum.IntEnum):
    ECHO = 1  # load.echo: result checked byte for byte
    WORK = 2  # load.work: runs in a worker thread, reports progress
    CANCEL = 3  # load.work cancelled while it runs: CANCELLED, or OK if it won the race
    FAIL = 4  # load.fail: must fail
    STATUS = 5  # aether.status: a builtin, not journaled


class Outcome(enum.IntEnum):
    OK = 1  # a result that matched the request (or the expected failure)
    MISMATCH = 2  # a result that does not match the request
    UNKNOWN = 3  # OutcomeUnknownError: the connection broke while it ran
    FAILED = 4  # an error status the call should not have had
    CANCELLED = 5  # CANCELLED, for a call that was cancelled
    NOT_SENT = 6  # the session was gone before the call was sent
    TIMEOUT = 7  # no answer within the client's bound


JOURNALED = {Kind.ECHO, Kind.WORK, Kind.CANCEL}
# After a restarted service is ready, how long a client may still report the
# old session's end (it notices at its next call).
RESTART_GRACE_NS = 2_000_000_000


def client_file(directory: Path, client: int) -> Path:
    return directory / f"client-{client}.bin"


def read_records(path: Path) -> list[tuple[int, int, int, int, int]]:
    """A client's records; a trailing partial record (the client was killed
    mid-write) is ignored."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    whole = len(data) - len(data) % RECORD.size
    return list(RECORD.iter_unpack(data[:whole]))


def read_journals(directory: Path) -> dict[tuple[int, int], int]:
    """(client, seq) -> how many times the service committed it, over every
    service process that ran (one journal file each)."""
    counts: dict[tuple[int, int], int] = {}
    for path in sorted(directory.glob("journal-*.bin")):
        data = path.read_bytes()
        whole = len(data) - len(data) % JOURNAL.size
        for key in JOURNAL.iter_unpack(data[:whole]):
            counts[key] = counts.get(key, 0) + 1
    return counts


@dataclass
class Accounting:
    """The counts a run reports; every field but the totals must be zero
    (``unconfirmed`` and ``unknown`` only where something was killed)."""

    calls: int = 0  # calls the clients recorded
    ok: int = 0
    expected_calls: int = 0  # calls the clients were asked to make (load runs)
    missing_records: int = 0  # calls asked for but never recorded (load runs)
    lost: int = 0
    duplicated: int = 0
    mismatched: int = 0
    false_success: int = 0  # success reported, never committed by the service
    cancelled_but_committed: int = 0  # CANCELLED reported, yet committed
    failed: int = 0  # an unexpected error status
    unknown: int = 0  # outcome unknown (expected only around kills)
    not_sent: int = 0
    timeouts: int = 0
    unconfirmed: int = 0  # committed; the client was killed before it heard
    repeated_records: int = 0  # the same seq recorded twice by one client
    by_kind: dict[str, int] = field(default_factory=dict)  # "kind outcome" -> calls

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.mismatched or self.false_success
                    or self.cancelled_but_committed or self.failed or self.repeated_records
                    or self.missing_records)


def account(
    clients: Iterable[tuple[int, list[tuple[int, int, int, int, int]]]],
    journal: dict[tuple[int, int], int],
    *,
    killed: Collection[int] = (),
    restarts: Sequence[tuple[int, int]] = (),
    expected_per_client: int | Mapping[int, int] | None = None,
) -> Accounting:
    """Compare what the clients recorded with what the service committed.

    ``killed`` are client ids the harness SIGKILLed: the call each had in
    flight may be committed without a record. ``restarts`` are (kill, ready)
    times in monotonic ns of service restarts: an UNKNOWN outcome (or a call
    that could not be sent) is expected only from the kill until shortly
    after the next service was ready; anywhere else it counts as lost.
    """
    acc = Accounting()
    recorded: set[tuple[int, int]] = set()
    last_seq: dict[int, int] = {}
    windows = [(kill, ready + RESTART_GRACE_NS) for kill, ready in restarts]

    def near_restart(t: int) -> bool:
        return any(lo <= t <= hi for lo, hi in windows)

    for cid, records in clients:
        seqs: set[int] = set()
        for seq, kind, outcome, _lat, end in records:
            acc.calls += 1
            name = f"{Kind(kind).name.lower()} {Outcome(outcome).name.lower()}"
            acc.by_kind[name] = acc.by_kind.get(name, 0) + 1
            if seq in seqs:
                acc.repeated_records += 1
                continue
            seqs.add(seq)
            key = (cid, seq)
            recorded.add(key)
            committed = journal.get(key, 0)
            journaled = kind in JOURNALED
            if journaled and committed > 1:
                acc.duplicated += 1
            if outcome == Outcome.OK:
                acc.ok += 1
                if journaled and not committed:
                    acc.false_success += 1
            elif outcome == Outcome.MISMATCH:
                acc.mismatched += 1
            elif outcome == Outcome.CANCELLED:
                if committed:
                    acc.cancelled_but_committed += 1
            elif outcome in (Outcome.UNKNOWN, Outcome.NOT_SENT):
                if outcome == Outcome.UNKNOWN:
                    acc.unknown += 1
                else:
                    acc.not_sent += 1
                if not near_restart(end):
                    acc.lost += 1
            elif outcome == Outcome.TIMEOUT:
                acc.timeouts += 1
                acc.lost += 1
            else:
                acc.failed += 1
        last_seq[cid] = max(seqs, default=-1)
        if expected_per_client is not None:
            expected = expected_per_client if isinstance(expected_per_client, int) \
                else expected_per_client[cid]
            acc.expected_calls += expected
            acc.missing_records += max(0, expected - len(seqs))
    killed = set(killed)
    for key, count in journal.items():
        if key in recorded:
            continue
        cid, seq = key
        if count > 1:
            acc.duplicated += 1
        if cid in killed and seq == last_seq.get(cid, -1) + 1:
            acc.unconfirmed += 1  # in flight when the client was killed
        else:
            acc.lost += 1  # the service did it; the client never learnt of it
    return acc


def latencies_ns(records: Iterable[tuple[int, int, int, int, int]],
                 kinds: set[int] | None = None) -> Iterator[int]:
    for _seq, kind, outcome, lat, _end in records:
        if outcome == Outcome.OK and (kinds is None or kind in kinds):
            yield lat

