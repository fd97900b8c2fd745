"""Aether Guard's operations: the seed's "separate library" of shared
structures, imported by the service, the CLI and the GUI alike.

Every Struct's docstring and field description becomes the JSON Schema the
service publishes through ``aether.describe`` (the GUI shows them as tooltips).

Paths on the wire are absolute ``str``. A file name that is not valid UTF-8
is shown with ``\\xNN`` escapes; such files are checked like any other but
cannot be named in ``guard.quarantine``.

Times are Unix seconds (float) for events, nanoseconds (int) for file times.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

import aether

#: Attributes a policy can ask Guard to record and compare.
Attribute = Literal[
    "sha256", "blake2b", "size", "mode", "uid", "gid", "mtime", "ctime", "inode", "target",
    "type",
]
ALL_ATTRIBUTES: tuple[str, ...] = (
    "sha256", "blake2b", "size", "mode", "uid", "gid", "mtime", "ctime", "inode", "target",
    "type",
)
#: What a policy path checks when it names no attributes.
DEFAULT_ATTRIBUTES: tuple[str, ...] = (
    "sha256", "size", "mode", "uid", "gid", "mtime", "ctime", "inode", "target", "type",
)

FileType = Literal["file", "dir", "symlink", "fifo", "socket", "chardev", "blockdev", "unknown"]
ChangeKind = Literal["added", "removed", "changed", "problem"]
Value = str | int | None


# -- status -------------------------------------------------------------------------
class PolicyPath(msgspec.Struct, frozen=True, kw_only=True):
    """One monitored tree of the policy."""

    path: Annotated[str, Meta(description="Absolute path of the monitored tree.")]
    attributes: Annotated[list[str], Meta(description="Attributes recorded and compared.")]
    exclude: Annotated[list[str], Meta(description="Glob patterns left out of the tree.")] = []


class BaselineInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The baseline in force: what the file system is compared with."""

    baseline_id: int
    created: Annotated[float, Meta(description="Unix time the baseline was committed.")]
    age_s: Annotated[float, Meta(description="Seconds since it was committed.")]
    files: Annotated[int, Meta(description="Entries recorded (files, directories, links).")]
    bytes: Annotated[int, Meta(description="Bytes of content hashed.")]
    problems: Annotated[int, Meta(description="Entries that could not be read fully.")] = 0
    caller_uid: Annotated[int, Meta(description="Who took it (-1: the service itself).")] = -1


class ReportInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Summary of one stored check report."""

    report_id: int
    created: Annotated[float, Meta(description="Unix time the check finished.")]
    baseline_id: int
    trigger: Annotated[Literal["client", "schedule"], Meta(
        description="Who ran the check: a client or the policy's schedule.")]
    caller_uid: Annotated[int, Meta(description="uid of the calling client (-1: schedule).")]
    files_checked: int
    added: int
    removed: int
    changed: int
    problems: int
    elapsed_s: float
    accepted: Annotated[int, Meta(description="Changes of this report accepted so far.")] = 0


class GuardStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Result of ``guard.status``."""

    policy_file: str
    paths: list[PolicyPath]
    hash_workers: int
    schedule_s: Annotated[float | None, Meta(
        description="Seconds between scheduled checks (None: no schedule).")]
    baseline: BaselineInfo | None
    last_report: ReportInfo | None
    next_check_in_s: float | None = None
    running: Annotated[list[str], Meta(
        description="Guard operations running now, e.g. 'guard.baseline (uid 0)'.")] = []
    watchers: Annotated[int, Meta(description="Clients subscribed to guard.watch.")] = 0
    vault_entries: Annotated[int, Meta(description="Files in quarantine now.")] = 0
    database: str = ""
    database_bytes: int = 0


@aether.operation(code=0x0101, name="guard.status", result=GuardStatus, idempotent=True)
class GuardStatusParams(aether.Params, frozen=True, kw_only=True):
    """Policy summary, baseline age and size, last check, running operations."""


# -- baseline -------------------------------------------------------------------------
class BaselineSummary(msgspec.Struct, frozen=True, kw_only=True):
    """Result of ``guard.baseline``: the new baseline, now in force."""

    baseline: BaselineInfo
    elapsed_s: float
    problems: Annotated[list[Change], Meta(
        description="Up to 100 entries that could not be read (kind 'problem').")] = []


@aether.operation(code=0x0102, name="guard.baseline", result=BaselineSummary, privileged=True)
class Baseline(aether.Params, frozen=True, kw_only=True):
    """Walk the policy's paths and record every entry's attributes as the new baseline.

    Progress: ``done``/``total`` count entries (the total grows as the walk
    finds more), the message names bytes hashed. Cancel (or a crash) leaves
    the previous baseline in force: the new one is committed in a single
    transaction at the end.
    """


# -- check and reports ----------------------------------------------------------------
class AttributeChange(msgspec.Struct, frozen=True, kw_only=True):
    """One attribute that differs from the baseline."""

    name: Annotated[str, Meta(description="Attribute name, e.g. 'sha256', 'mode'.")]
    old: Annotated[Value, Meta(description="Value in the baseline.")]
    new: Annotated[Value, Meta(description="Value found now.")]


class Change(msgspec.Struct, frozen=True, kw_only=True):
    """One finding of a check: an added, removed or changed entry, or a problem."""

    path: str
    kind: ChangeKind
    type: Annotated[FileType, Meta(description="Entry type now (before, if removed).")] = "file"
    attributes: Annotated[list[AttributeChange], Meta(
        description="For 'changed': each differing attribute with old and new values.")] = []
    problem: Annotated[str | None, Meta(
        description="Why the entry could not be checked (unreadable, vanished, "
                    "symlink loop, changed during the scan...).")] = None
    accepted: Annotated[bool, Meta(description="Accepted into the baseline since.")] = False


class CheckSummary(msgspec.Struct, frozen=True, kw_only=True):
    """Result of ``guard.check``; fetch the findings with ``guard.report``."""

    report: ReportInfo
    first: Annotated[list[Change], Meta(
        description="The first findings (up to 50), for a quick look.")] = []


@aether.operation(code=0x0103, name="guard.check", result=CheckSummary)
class Check(aether.Params, frozen=True, kw_only=True):
    """Compare the file system with the baseline and store the report.

    Progress as for ``guard.baseline``. Cancel stores nothing.
    """


class ReportList(msgspec.Struct, frozen=True, kw_only=True):
    """Result of ``guard.reports``, newest first."""

    reports: list[ReportInfo]
    total: int


@aether.operation(code=0x0104, name="guard.reports", result=ReportList, idempotent=True)
class Reports(aether.Params, frozen=True, kw_only=True):
    """List stored reports, newest first."""

    offset: Annotated[int, Meta(ge=0)] = 0
    limit: Annotated[int, Meta(ge=1, le=1000)] = 50


class ReportPage(msgspec.Struct, frozen=True, kw_only=True):
    """Result of ``guard.report``: one page of a report's findings."""

    report: ReportInfo
    offset: int
    changes: list[Change]
    total: Annotated[int, Meta(description="Findings matching the filter.")]
    next_offset: Annotated[int | None, Meta(
        description="Offset of the next page (None: this was the last).")] = None


@aether.operation(code=0x0105, name="guard.report", result=ReportPage, idempotent=True)
class Report(aether.Params, frozen=True, kw_only=True):
    """Fetch one page of a stored report's findings, ordered by path."""

    report_id: Annotated[int, Meta(ge=0, description="Report id; 0 for the latest.")] = 0
    offset: Annotated[int, Meta(ge=0)] = 0
    limit: Annotated[int, Meta(ge=1, le=5000)] = 500
    kinds: Annotated[list[ChangeKind], Meta(
        description="Only these kinds (empty: all).")] = []


# -- accept ---------------------------------------------------------------------------
class AcceptResult(msgspec.Struct, frozen=True, kw_only=True):
    """Result of ``guard.accept``."""

    report_id: int
    baseline_id: int
    accepted: Annotated[int, Meta(description="Changes written into the baseline.")]
    skipped: Annotated[list[str], Meta(
        description="Requested paths that are not changes of this report.")] = []


@aether.operation(code=0x0106, name="guard.accept", result=AcceptResult, privileged=True)
class Accept(aether.Params, frozen=True, kw_only=True):
    """Accept all or selected changes of a report into the baseline.

    Only reports made against the baseline in force can be accepted.
    """

    report_id: Annotated[int, Meta(ge=1)]
    paths: Annotated[list[str], Meta(description="Paths to accept (empty: all).")] = []


# -- quarantine -----------------------------------------------------------------------
class VaultEntry(msgspec.Struct, frozen=True, kw_only=True):
    """A file in (or once in) the quarantine vault, with what restore puts back."""

    entry_id: int
    path: Annotated[str, Meta(description="Where the file was, and is restored to.")]
    size: int
    mode: Annotated[int, Meta(description="st_mode, type bits included.")]
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int
    sha256: str
    quarantined_at: float
    caller_uid: int
    restored_at: float | None = None


@aether.operation(code=0x0107, name="guard.quarantine", result=VaultEntry, privileged=True)
class Quarantine(aether.Params, frozen=True, kw_only=True):
    """Move a regular file into the root-only vault, recording its metadata."""

    path: Annotated[str, Meta(min_length=1, max_length=4096,
                              description="Absolute path inside the policy's paths.")]


@aether.operation(code=0x0108, name="guard.restore", result=VaultEntry, privileged=True)
class Restore(aether.Params, frozen=True, kw_only=True):
    """Put a quarantined file back exactly: content, mode, owner, access and
    modification times. Refused if something now exists at its path."""

    entry_id: Annotated[int, Meta(ge=1)]


class VaultList(msgspec.Struct, frozen=True, kw_only=True):
    """Result of ``guard.vault``."""

    entries: list[VaultEntry]


@aether.operation(code=0x010A, name="guard.vault", result=VaultList, idempotent=True)
class Vault(aether.Params, frozen=True, kw_only=True):
    """List the files in quarantine (and, on request, those restored)."""

    include_restored: bool = False


# -- watch ------------------------------------------------------------------------------
class WatchEvent(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """One change seen by inotify (sent as ``[kind, path, time]``)."""

    kind: Annotated[Literal["created", "modified", "attrib", "deleted", "moved_from",
                            "moved_to", "overflow", "unwatched"], Meta(
        description="'overflow': the kernel dropped events, run guard.check.")]
    path: str
    time: float


class WatchBatch(msgspec.Struct, frozen=True, kw_only=True):
    """Carried as JSON in each progress message of ``guard.watch``.

    ``seq`` numbers events from 1; a gap between batches means events were
    dropped (progress is lossy for a client that does not read): run
    ``guard.check`` to resynchronise.
    """

    seq: Annotated[int, Meta(description="Sequence number of events[0].")]
    events: list[WatchEvent]


class WatchSummary(msgspec.Struct, frozen=True, kw_only=True):
    """Result of ``guard.watch`` once the subscription ends (cancel or max_seconds)."""

    events: int
    dropped: Annotated[int, Meta(description="Events lost to queue limits.")]
    watched_dirs: int
    ended: Literal["cancelled", "timeout", "stopping"]
    problems: list[str] = []


@aether.operation(code=0x0109, name="guard.watch", result=WatchSummary)
class Watch(aether.Params, frozen=True, kw_only=True):
    """Subscribe to live change events for the policy's paths (inotify).

    Events arrive as progress reports whose message is a JSON ``WatchBatch``
    (decode with :func:`decode_watch_batch`); cancel the operation to end the
    subscription, which then returns a ``WatchSummary``.
    """

    max_seconds: Annotated[float, Meta(
        ge=0, description="End the subscription after this long (0: until cancelled).")] = 0


_batch_decoder = msgspec.json.Decoder(WatchBatch)


def decode_watch_batch(message: str) -> WatchBatch | None:
    """The events carried by one ``guard.watch`` progress message (None if none)."""
    if not message.startswith("{"):
        return None
    try:
        return _batch_decoder.decode(message)
    except msgspec.DecodeError:
        return None


# -- ad hoc hashing (no baseline) ------------------------------------------------------------
class FileDigest(msgspec.Struct, frozen=True, kw_only=True):
    path: Annotated[str, Meta(description="Relative to the root that was hashed.")]
    size: int
    digest: Annotated[str, Meta(description="Hex digest.")]


class FileProblem(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    reason: str


class TreeDigest(msgspec.Struct, frozen=True, kw_only=True):
    """Result of ``guard.hash_tree``."""

    root: str
    algorithm: str
    files: list[FileDigest]
    problems: list[FileProblem] = []
    total_bytes: int = 0
    elapsed_s: float = 0.0


@aether.operation(code=0x010F, name="guard.hash_tree", result=TreeDigest, idempotent=True,
                  privileged=True)
class HashTree(aether.Params, frozen=True, kw_only=True):
    """Hash every regular file under a directory and return the digests (ad hoc:
    nothing is recorded).

    Privileged: the service reads files with its own rights. With a policy
    loaded, only trees inside the policy's paths may be named. Symlinks are
    not followed; unreadable and special files are reported as problems.
    Reports progress per file; honours cancel.
    """

    root: str
    algorithm: Literal["sha256", "blake2b"] = "sha256"
    max_files: int = 100_000
