"""``guard.watch``: inotify events for the policy's trees, sent to one
subscribed client as progress reports of a long-running operation.

Each subscription has its own inotify instance watching every directory of
the policy's trees (new directories are added as they appear). Events are
batched into JSON ``WatchBatch`` messages of at most ``MESSAGE_LIMIT``
characters (the progress message size); each batch is reported with
``done == total == sequence number``, which the host always delivers
(final-looking reports bypass its rate limit). A client that reads too
slowly loses batches and sees a gap in the sequence numbers.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable

import msgspec

from aether.osapi import inotify as ino
from aether.service import OperationContext

from .policy import GuardPolicy
from .schema import WatchBatch, WatchEvent, WatchSummary
from .store import wire_path

MESSAGE_LIMIT = 500
PAUSE = 0.05  # gather events this long before sending a batch
_encoder = msgspec.json.Encoder()

_KINDS = (
    (ino.IN_Q_OVERFLOW, "overflow"), (ino.IN_CREATE, "created"), (ino.IN_DELETE, "deleted"),
    (ino.IN_MOVED_FROM, "moved_from"), (ino.IN_MOVED_TO, "moved_to"),
    (ino.IN_ATTRIB, "attrib"), (ino.IN_MODIFY | ino.IN_CLOSE_WRITE, "modified"),
    (ino.IN_DELETE_SELF | ino.IN_MOVE_SELF, "unwatched"),
)


def _kind(mask: int) -> str | None:
    for bits, name in _KINDS:
        if mask & bits:
            return name
    return None


class Subscription:
    def __init__(self, policy: GuardPolicy, ctx: OperationContext) -> None:
        self.policy = policy
        self.ctx = ctx
        self.inotify = ino.Inotify()
        self.dirs: dict[int, bytes] = {}
        self.seq = 0
        self.sent = 0
        self.dropped = 0
        self.problems: list[str] = []
        self._limit_hit = False

    def _watch_tree(self, top: bytes) -> None:
        stack = [top]
        while stack:
            directory = stack.pop()
            text = os.fsdecode(directory)
            if not self.policy.covers(text):
                continue
            try:
                wd = self.inotify.add_watch(directory)
            except OSError as exc:
                if exc.errno == 28 and not self._limit_hit:  # ENOSPC: max_user_watches
                    self._limit_hit = True
                    self.problems.append("inotify watch limit reached "
                                         "(fs.inotify.max_user_watches): some directories "
                                         "are not watched")
                continue
            self.dirs[wd] = directory
            try:
                with os.scandir(directory) as it:
                    for child in it:
                        if child.is_dir(follow_symlinks=False):
                            stack.append(child.path)
            except OSError:
                continue

    def run(self, max_seconds: float, stopping: Callable[[], bool],
            ready: Callable[[], None] = lambda: None) -> WatchSummary:
        """Watch until cancelled or ``max_seconds``; ``ready()`` once every
        directory is watched (events from then on are delivered)."""
        try:
            for rule in self.policy.paths:
                self._watch_tree(os.fsencode(rule.path))
            ready()
            deadline = time.monotonic() + max_seconds if max_seconds else None
            ended = "cancelled"
            pending: list[WatchEvent] = []
            while True:
                if self.ctx.cancelled:
                    ended = "stopping" if stopping() else "cancelled"
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    ended = "timeout"
                    break
                timeout = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
                if self.inotify.wait(max(0.0, timeout)):
                    time.sleep(PAUSE)  # let a burst arrive: fewer, fuller batches
                    pending.extend(self._read())
                    self._send(pending)
                    pending.clear()
            return WatchSummary(events=self.seq, dropped=self.dropped,
                                watched_dirs=len(self.dirs), ended=ended,  # type: ignore[arg-type]
                                problems=self.problems)
        finally:
            self.inotify.close()

    def _read(self) -> list[WatchEvent]:
        now = time.time()
        events: list[WatchEvent] = []
        last: tuple[str, bytes] | None = None
        for ev in self.inotify.read():
            if ev.mask & ino.IN_IGNORED:
                self.dirs.pop(ev.wd, None)
                continue
            kind = _kind(ev.mask)
            if kind is None:
                continue
            base = self.dirs.get(ev.wd, b"")
            path = base + b"/" + ev.name if ev.name else base
            if kind != "overflow" and not self.policy.covers(os.fsdecode(path)):
                continue
            if (kind, path) == last:
                continue  # a write() burst: one "modified"
            last = (kind, path)
            if kind in ("created", "moved_to") and ev.mask & ino.IN_ISDIR:
                self._watch_tree(path)
            elif kind in ("created", "moved_to"):
                try:
                    if stat.S_ISDIR(os.lstat(path).st_mode):
                        self._watch_tree(path)
                except OSError:
                    pass
            events.append(WatchEvent(kind=kind, path=wire_path(path),  # type: ignore[arg-type]
                                     time=round(now, 6)))
        return events

    def _send(self, events: list[WatchEvent]) -> None:
        batch: list[WatchEvent] = []
        size = 0
        for event in events:
            cost = len(event.path) + 40
            if cost > MESSAGE_LIMIT - 40:
                event = WatchEvent(kind=event.kind, path=event.path[: MESSAGE_LIMIT - 120] + "…",
                                   time=event.time)
                cost = MESSAGE_LIMIT - 40
            if batch and size + cost > MESSAGE_LIMIT - 40:
                self._emit(batch)
                batch, size = [], 0
            batch.append(event)
            size += cost
        if batch:
            self._emit(batch)

    def _emit(self, batch: list[WatchEvent]) -> None:
        first = self.seq + 1
        self.seq += len(batch)
        message = _encoder.encode(WatchBatch(seq=first, events=batch)).decode()
        if len(message) > 512 and len(batch) > 1:  # escapes made it longer than estimated
            half = len(batch) // 2
            self.seq = first - 1
            self._emit(batch[:half])
            self._emit(batch[half:])
            return
        self.ctx.progress(self.seq, self.seq, message[:512])
