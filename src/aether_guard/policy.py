"""Guard's policy: a TOML file naming the monitored trees, what to check,
the schedule and who may call what.

Example (``docs/guard.md`` explains every key)::

    [guard]
    hash_workers = 4
    schedule = "1h"              # periodic check; "off" or omit for none

    [[paths]]
    path = "/etc"
    exclude = ["/etc/mtab", "*.swp"]
    attributes = ["sha256", "size", "mode", "uid", "gid", "mtime", "type"]

    [access]
    privileged_uids = [0]
    privileged_groups = ["wheel"]
    read_group = "adm"           # read operations for this group only (omit: anyone)

A bad policy raises :class:`PolicyError` naming the file and line.
"""

from __future__ import annotations

import fnmatch
import grp
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from aether.errors import AetherError
from aether.schema import OperationSpec
from aether.service.policy import Caller, Policy

from .schema import ALL_ATTRIBUTES, DEFAULT_ATTRIBUTES

READ_OPERATIONS = frozenset({
    "guard.status", "guard.check", "guard.reports", "guard.report", "guard.watch", "guard.vault",
})
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class PolicyError(AetherError):
    """The policy file is missing or malformed; ``line`` is 1-based (0: unknown)."""

    def __init__(self, file: str, line: int, message: str) -> None:
        self.file = file
        self.line = line
        where = f"{file}, line {line}" if line else file
        super().__init__(f"bad Guard policy {where}: {message}")


@dataclass(frozen=True)
class PathRule:
    path: str
    attributes: tuple[str, ...]
    exclude: tuple[str, ...] = ()

    def excluded(self, path: str) -> bool:
        """True if ``path`` (absolute) matches an exclusion glob: patterns with
        a ``/`` match the whole path, others the last component."""
        name = path.rsplit("/", 1)[-1]
        for pattern in self.exclude:
            target = path if "/" in pattern else name
            if fnmatch.fnmatchcase(target, pattern):
                return True
        return False

    def contains(self, path: str) -> bool:
        return path == self.path or path.startswith(self.path.rstrip("/") + "/")


@dataclass(frozen=True)
class GuardAccess(Policy):
    """Aether's privileged default-deny plus Guard's read group: when
    ``read_groups`` is set, read operations are for members (and privileged
    callers) only."""

    read_groups: frozenset[int] | None = None

    def allows(self, spec: OperationSpec, caller: Caller) -> bool:
        if spec.name in READ_OPERATIONS and self.read_groups is not None:
            groups = {caller.gid} | caller.groups
            if self.read_groups & groups:
                return True
            return caller.uid in self.privileged_uids or bool(self.privileged_groups & groups)
        return super().allows(spec, caller)


@dataclass(frozen=True)
class GuardPolicy:
    file: str
    paths: tuple[PathRule, ...]
    access: GuardAccess
    hash_workers: int = 4
    schedule_s: float | None = None
    state_dir: str | None = None
    text: str = field(default="", repr=False)

    def rule_for(self, path: str) -> PathRule | None:
        """The most specific rule whose tree holds ``path``."""
        best: PathRule | None = None
        for rule in self.paths:
            if rule.contains(path) and (best is None or len(rule.path) > len(best.path)):
                best = rule
        return best

    def covers(self, path: str) -> bool:
        rule = self.rule_for(path)
        return rule is not None and not rule.excluded(path)


def _line_of(text: str, key: str, occurrence: int = 0, section: str | None = None) -> int:
    """Best-effort line of ``key = ...`` (its ``occurrence``-th use after the
    ``section`` header), since tomllib reports positions only for syntax errors."""
    lines = text.splitlines()
    start = 0
    if section is not None:
        header = re.compile(r"^\s*\[+\s*" + re.escape(section) + r"\s*\]+")
        seen = -1
        for i, line in enumerate(lines):
            if header.match(line):
                seen += 1
                if seen == occurrence:
                    start = i
                    break
        else:
            return 0
        occurrence = 0
    pattern = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
    count = -1
    for i in range(start, len(lines)):
        if pattern.match(lines[i]):
            count += 1
            if count == occurrence:
                return i + 1
    return start + 1 if section is not None else 0


def parse_duration(value: Any) -> float | None:
    if value is None or value in ("off", "never", 0, "0"):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)
        if match and float(match.group(1)) > 0:
            return float(match.group(1)) * _UNITS[match.group(2) or "s"]
    raise ValueError(f"{value!r} is not a duration such as 300, \"30m\", \"1h\" or \"off\"")


def _gid(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        try:
            return grp.getgrnam(value).gr_gid
        except KeyError:
            raise ValueError(f"no group named {value!r}") from None
    raise ValueError(f"{value!r} is not a group name or gid")


def parse_policy(text: str, file: str = "<policy>") -> GuardPolicy:
    """Parse and validate policy text; raise :class:`PolicyError` with a line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise PolicyError(file, int(match.group(1)) if match else 0, str(exc)) from None

    def fail(message: str, key: str, occurrence: int = 0,
             section: str | None = None) -> NoReturn:
        raise PolicyError(file, _line_of(text, key, occurrence, section), message)

    for top in data:
        if top not in ("guard", "paths", "access"):
            raise PolicyError(file, _line_of(text, top) or _line_of(text, top, section=top),
                              f"unknown key or section {top!r} (expected guard, paths, access)")
    guard = data.get("guard", {})
    if not isinstance(guard, dict):
        fail("[guard] must be a table", "guard")
    workers = guard.get("hash_workers", min(4, os.cpu_count() or 1))
    if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= 64:
        fail("hash_workers must be an integer from 1 to 64", "hash_workers", section="guard")
    schedule: float | None = None
    try:
        schedule = parse_duration(guard.get("schedule"))
    except ValueError as exc:
        fail(f"schedule: {exc}", "schedule", section="guard")
    state_dir = guard.get("state_dir")
    if state_dir is not None and (not isinstance(state_dir, str) or not state_dir.startswith("/")):
        fail("state_dir must be an absolute path", "state_dir", section="guard")
    for key in guard:
        if key not in ("hash_workers", "schedule", "state_dir"):
            fail(f"unknown key {key!r} in [guard]", key, section="guard")

    raw_paths = data.get("paths", [])
    if not isinstance(raw_paths, list) or not raw_paths:
        fail("the policy needs at least one [[paths]] table with a path", "paths")
    rules: list[PathRule] = []
    for index, entry in enumerate(raw_paths):
        def bad(message: str, key: str, index: int = index) -> NoReturn:
            fail(f"[[paths]] #{index + 1}: {message}", key, index, section="paths")

        if not isinstance(entry, dict):
            bad("must be a table", "path")
        for key in entry:
            if key not in ("path", "exclude", "attributes"):
                bad(f"unknown key {key!r}", key)
        path = entry.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            bad("path must be an absolute path", "path")
        path = os.path.normpath(path)
        exclude = entry.get("exclude", [])
        if not isinstance(exclude, list) or not all(isinstance(e, str) and e for e in exclude):
            bad("exclude must be a list of glob patterns", "exclude")
        attributes = entry.get("attributes", list(DEFAULT_ATTRIBUTES))
        if not isinstance(attributes, list) or not attributes:
            bad("attributes must be a non-empty list", "attributes")
        for attr in attributes:
            if attr not in ALL_ATTRIBUTES:
                bad(f"unknown attribute {attr!r} (known: {', '.join(ALL_ATTRIBUTES)})",
                    "attributes")
        if any(r.path == path for r in rules):
            bad(f"{path} is listed twice", "path")
        rules.append(PathRule(path=path, attributes=tuple(dict.fromkeys(attributes)),
                              exclude=tuple(exclude)))

    access = data.get("access", {})
    if not isinstance(access, dict):
        fail("[access] must be a table", "access")
    for key in access:
        if key not in ("privileged_uids", "privileged_groups", "read_group", "read_groups"):
            fail(f"unknown key {key!r} in [access]", key, section="access")
    uids = access.get("privileged_uids", [0])
    if not isinstance(uids, list) or not all(
            isinstance(u, int) and not isinstance(u, bool) and u >= 0 for u in uids):
        fail("privileged_uids must be a list of uids", "privileged_uids", section="access")
    try:
        pgroups = frozenset(_gid(g) for g in access.get("privileged_groups", []))
    except (ValueError, TypeError) as exc:
        fail(f"privileged_groups: {exc}", "privileged_groups", section="access")
    read_groups: frozenset[int] | None = None
    for key in ("read_group", "read_groups"):
        if key in access:
            value = access[key]
            try:
                items = value if isinstance(value, list) else [value]
                read_groups = (read_groups or frozenset()) | frozenset(_gid(g) for g in items)
            except (ValueError, TypeError) as exc:
                fail(f"{key}: {exc}", key, section="access")
    # The service's own uid is always privileged: a user-mode Guard (the demo)
    # is administered by the user who runs it.
    policy_access = GuardAccess(
        privileged_uids=frozenset(uids) | {os.geteuid()},
        privileged_groups=pgroups,
        read_groups=read_groups,
    )
    return GuardPolicy(file=file, paths=tuple(rules), access=policy_access,
                       hash_workers=workers, schedule_s=schedule, state_dir=state_dir, text=text)


def load_policy(path: str | os.PathLike[str]) -> GuardPolicy:
    file = str(path)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(file, 0, f"cannot read it: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise PolicyError(file, 0, "not UTF-8 text") from None
    return parse_policy(text, file)


def default_policy_text(paths: list[str], schedule: str = "1h") -> str:
    """The policy ``aether service install guard`` writes when none exists."""
    attributes = ", ".join(f'"{a}"' for a in DEFAULT_ATTRIBUTES)
    blocks = "\n".join(
        f'[[paths]]\npath = "{p}"\nexclude = []\nattributes = [{attributes}]\n' for p in paths
    )
    return (
        "# Aether Guard policy (see docs/guard.md). Reload with: systemctl reload aether-guard\n"
        "[guard]\nhash_workers = 4\n"
        f'schedule = "{schedule}"\n\n'
        f"{blocks}\n"
        "[access]\nprivileged_uids = [0]\nprivileged_groups = []\n"
        "# read_group = \"adm\"   # read operations for this group only (omit: anyone)\n"
    )
