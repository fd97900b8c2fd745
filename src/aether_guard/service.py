"""Aether Guard, the service: a host file-integrity monitor built on Aether.

Run it with ``aether service run guard`` (or install it with ``aether
service install guard``). Configuration:

- ``$AETHER_GUARD_POLICY``: the TOML policy (default ``/etc/aether/guard.toml``
  as root, ``$XDG_CONFIG_HOME/aether/guard.toml`` otherwise);
- ``$AETHER_GUARD_STATE``: the state directory (database, vault); default
  the policy's ``state_dir``, systemd's ``$STATE_DIRECTORY``,
  ``/var/lib/aether-guard`` as root, ``~/.local/state/aether-guard`` otherwise.

SIGHUP reloads the policy (a bad new policy is logged and the old one kept).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aether
from aether.service import OperationContext, Service

from . import adhoc, engine, schema, vault as vaultmod
from .policy import GuardAccess, GuardPolicy, load_policy
from .schema import (
    AcceptResult,
    BaselineSummary,
    CheckSummary,
    GuardStatus,
    PolicyPath,
    ReportList,
    ReportPage,
    VaultEntry,
    VaultList,
    WatchSummary,
)
from .store import Store
from .watch import Subscription

log = logging.getLogger("aether.service.guard")
security = logging.getLogger("aether.security")

service = aether.Service("guard", schema=schema)


def default_policy_path() -> Path:
    if env := os.environ.get("AETHER_GUARD_POLICY"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/etc/aether/guard.toml")
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "aether" / "guard.toml"


def default_state_dir(policy: GuardPolicy) -> Path:
    if env := os.environ.get("AETHER_GUARD_STATE"):
        return Path(env)
    if policy.state_dir:
        return Path(policy.state_dir)
    if env := os.environ.get("STATE_DIRECTORY"):
        return Path(env.split(":")[0])
    if os.geteuid() == 0:
        return Path("/var/lib/aether-guard")
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "aether-guard"


@dataclass
class Guard:
    """The service's state, created at startup."""

    policy_file: Path
    policy: GuardPolicy
    state_dir: Path
    store: Store
    vault: Path
    running: dict[int, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    watchers: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    next_check: float | None = None
    scheduler: threading.Thread | None = None

    def track(self, ctx: OperationContext) -> _Tracked:
        return _Tracked(self, ctx)


class _Tracked:
    def __init__(self, guard: Guard, ctx: OperationContext) -> None:
        self.guard = guard
        self.key = id(ctx)
        self.text = f"{ctx.op_name} (uid {ctx.caller.uid})"

    def __enter__(self) -> None:
        with self.guard.lock:
            self.guard.running[self.key] = self.text

    def __exit__(self, *exc: object) -> None:
        with self.guard.lock:
            self.guard.running.pop(self.key, None)


_guard: Guard | None = None


def guard() -> Guard:
    if _guard is None:
        raise aether.OperationFailed("Guard is not started")
    return _guard


# -- lifecycle --------------------------------------------------------------------------
@service.on_startup
def _start(svc: Service) -> None:
    global _guard
    policy_file = default_policy_path()
    if policy_file.exists() or "AETHER_GUARD_POLICY" in os.environ:
        policy = load_policy(policy_file)  # PolicyError names the line: no start
    else:
        log.warning("guard: no policy at %s: nothing is monitored until one is written "
                    "(aether service install guard writes one)", policy_file)
        policy = GuardPolicy(file=str(policy_file), paths=(), access=GuardAccess())
    state_dir = default_state_dir(policy)
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    store = Store(state_dir / "guard.db")
    vault = vaultmod.ensure_vault(state_dir)
    svc.policy = policy.access
    _guard = Guard(policy_file=policy_file, policy=policy, state_dir=state_dir, store=store,
                   vault=vault)
    _start_scheduler(_guard)
    log.info("guard: policy %s (%d paths), state in %s", policy_file, len(policy.paths),
             state_dir)


@service.on_reload
def _reload(svc: Service) -> None:
    g = guard()
    policy = load_policy(g.policy_file)  # raises: the host logs it, the old policy stays
    g.policy = policy
    svc.policy = policy.access
    _start_scheduler(g)
    log.info("guard: policy %s reloaded (%d paths)", g.policy_file, len(policy.paths))


@service.on_shutdown
def _shutdown(svc: Service) -> None:
    g = _guard
    if g is None:
        return
    g.stop.set()
    if g.scheduler is not None:
        g.scheduler.join(10)
    g.store.checkpoint()
    log.info("guard: database flushed")


def _schedule_next(g: Guard) -> None:
    g.next_check = (time.monotonic() + g.policy.schedule_s) if g.policy.schedule_s else None


def _start_scheduler(g: Guard) -> None:
    """A thread for the policy's schedule, started only once a policy has one
    (an idle Guard runs only its main thread)."""
    _schedule_next(g)
    if g.next_check is None or g.scheduler is not None:
        return

    def loop() -> None:
        while not g.stop.wait(0.5):
            due = g.next_check
            if due is None or time.monotonic() < due:
                continue
            _schedule_next(g)
            _scheduled_check(g)

    g.scheduler = threading.Thread(target=loop, name="guard-schedule", daemon=True)
    g.scheduler.start()


def _scheduled_check(g: Guard) -> None:
    with g.store.session() as conn:
        if g.store.current_baseline_id(conn) is None:
            log.warning("guard: scheduled check skipped: no baseline yet")
            return
    key = -1
    with g.lock:
        g.running[key] = "guard.check (schedule)"
    try:
        def cancelled() -> bool:
            return g.stop.is_set()

        def check_cancelled() -> None:
            if g.stop.is_set():
                raise aether.Cancelled("service stopping")

        info, first = engine.run_check(g.store, g.policy, trigger="schedule", caller_uid=-1,
                                       progress=lambda *a: None, cancelled=cancelled,
                                       check_cancelled=check_cancelled)
        log_findings(info, first)
    except aether.Cancelled:
        pass
    except Exception as exc:
        log.error("guard: scheduled check failed: %s", exc)
    finally:
        with g.lock:
            g.running.pop(key, None)


def log_findings(info: schema.ReportInfo, first: list[schema.Change]) -> None:
    """Findings as security events: a summary, then one line per finding shown."""
    findings = info.added + info.removed + info.changed + info.problems
    level = logging.WARNING if findings else logging.INFO
    security.log(level, "service=guard report=%d trigger=%s added=%d removed=%d changed=%d "
                 "problems=%d", info.report_id, info.trigger, info.added, info.removed,
                 info.changed, info.problems)
    for change in first:
        attrs = ",".join(a.name for a in change.attributes)
        security.warning("service=guard report=%d %s %s%s%s", info.report_id, change.kind,
                         change.path, f" [{attrs}]" if attrs else "",
                         f" ({change.problem})" if change.problem else "")


# -- operations ----------------------------------------------------------------------------
def _progress(ctx: OperationContext):  # type: ignore[no-untyped-def]
    return lambda done, total, text: ctx.progress(done, total, text)


@service.handler(schema.GuardStatusParams)
def status(params: schema.GuardStatusParams, ctx: OperationContext) -> GuardStatus:
    g = guard()
    with g.store.session() as conn:
        baseline = g.store.baseline_info(conn)
        last = g.store.report_info(conn, 0)
        vault_entries = conn.execute(
            "SELECT count(*) FROM vault WHERE restored_at IS NULL").fetchone()[0]
    try:
        db_bytes = sum(p.stat().st_size for p in g.state_dir.glob("guard.db*"))
    except OSError:
        db_bytes = 0
    with g.lock:
        running = list(g.running.values())
    next_in = None if g.next_check is None else max(0.0, round(g.next_check - time.monotonic(),
                                                               3))
    return GuardStatus(
        policy_file=str(g.policy_file),
        paths=[PolicyPath(path=r.path, attributes=list(r.attributes), exclude=list(r.exclude))
               for r in g.policy.paths],
        hash_workers=g.policy.hash_workers, schedule_s=g.policy.schedule_s, baseline=baseline,
        last_report=last, next_check_in_s=next_in, running=running, watchers=g.watchers,
        vault_entries=vault_entries, database=str(g.store.path), database_bytes=db_bytes,
    )


@service.handler(schema.Baseline)
def baseline(params: schema.Baseline, ctx: OperationContext) -> BaselineSummary:
    g = guard()
    started = time.monotonic()
    with g.track(ctx):
        info, problems = engine.take_baseline(
            g.store, g.policy, ctx.caller.uid, _progress(ctx),
            cancelled=lambda: ctx.cancelled, check_cancelled=ctx.check_cancelled)
    log.info("guard: baseline %d by uid %d: %d entries, %d bytes, %d problems",
             info.baseline_id, ctx.caller.uid, info.files, info.bytes, info.problems)
    service.notifier.status(f"baseline {info.baseline_id}: {info.files} entries")
    return BaselineSummary(baseline=info, elapsed_s=round(time.monotonic() - started, 3),
                           problems=problems)


@service.handler(schema.Check)
def check(params: schema.Check, ctx: OperationContext) -> CheckSummary:
    g = guard()
    with g.track(ctx):
        info, first = engine.run_check(
            g.store, g.policy, trigger="client", caller_uid=ctx.caller.uid,
            progress=_progress(ctx), cancelled=lambda: ctx.cancelled,
            check_cancelled=ctx.check_cancelled)
    log_findings(info, first)
    return CheckSummary(report=info, first=first)


@service.handler(schema.Reports)
def reports(params: schema.Reports, ctx: OperationContext) -> ReportList:
    g = guard()
    with g.store.session() as conn:
        items, total = g.store.reports(conn, params.offset, params.limit)
    return ReportList(reports=items, total=total)


@service.handler(schema.Report)
def report(params: schema.Report, ctx: OperationContext) -> ReportPage:
    info, changes, total = engine.report_page(guard().store, params.report_id, params.offset,
                                              params.limit, list(params.kinds))
    end = params.offset + len(changes)
    return ReportPage(report=info, offset=params.offset, changes=changes, total=total,
                      next_offset=end if end < total else None)


@service.handler(schema.Accept)
def accept(params: schema.Accept, ctx: OperationContext) -> AcceptResult:
    result = engine.accept(guard().store, params.report_id, list(params.paths))
    security.info("service=guard uid=%d accepted %d changes of report %d", ctx.caller.uid,
                  result.accepted, params.report_id)
    return result


@service.handler(schema.Quarantine)
def quarantine(params: schema.Quarantine, ctx: OperationContext) -> VaultEntry:
    g = guard()
    entry = vaultmod.quarantine(g.store, g.policy, g.vault, params.path, ctx.caller.uid)
    security.warning("service=guard uid=%d quarantined %s (vault entry %d, sha256 %s)",
                     ctx.caller.uid, entry.path, entry.entry_id, entry.sha256)
    return entry


@service.handler(schema.Restore)
def restore(params: schema.Restore, ctx: OperationContext) -> VaultEntry:
    g = guard()
    entry = vaultmod.restore(g.store, g.policy, g.vault, params.entry_id)
    security.warning("service=guard uid=%d restored %s (vault entry %d)", ctx.caller.uid,
                     entry.path, entry.entry_id)
    return entry


@service.handler(schema.Vault)
def vault(params: schema.Vault, ctx: OperationContext) -> VaultList:
    g = guard()
    with g.store.session() as conn:
        return VaultList(entries=g.store.vault_list(conn, params.include_restored))


@service.handler(schema.Watch)
def watch(params: schema.Watch, ctx: OperationContext) -> WatchSummary:
    g = guard()
    counted = False

    def ready() -> None:
        nonlocal counted
        with g.lock:
            g.watchers += 1
            counted = True

    try:
        with g.track(ctx):
            return Subscription(g.policy, ctx).run(params.max_seconds,
                                                   stopping=service.stopping, ready=ready)
    finally:
        if counted:
            with g.lock:
                g.watchers -= 1


@service.handler(schema.HashTree)
def hash_tree(params: schema.HashTree, ctx: OperationContext) -> schema.TreeDigest:
    # Also registered by other services on Guard's schema (the hostile suite's
    # short-timeout target), which never run Guard's startup: no policy there.
    return adhoc.hash_tree(params, ctx, _guard.policy if _guard is not None else None)
