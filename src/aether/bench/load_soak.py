"""``aether bench load --soak MINUTES``: mixed traffic for a long time while
clients and the service are killed at random.

Clients (forked, one transport each, in turn over the transports this build
has; a replacement keeps the transport of the client it replaces) make a mix
of calls: echo with random payloads, work with progress, work cancelled at a
random moment, a call that must fail, the status builtin. At random
intervals the harness SIGKILLs a client and starts a new one in its place,
and SIGKILLs the service and starts it again on the same socket; clients
reconnect by themselves.

What it reports:

- the accounting of :mod:`aether.bench.load_records` over every call: no
  success the service did not commit (outcome unknown is never success), no
  duplicate, no mismatch, no CANCELLED that was committed, UNKNOWN only
  around a service restart;
- the service's RSS growth per hour after warm-up: a least-squares slope
  fitted within each service lifetime (samples from ``warmup`` seconds after
  its start) and pooled over lifetimes, so restarts do not count as growth;
- the service's descriptors and threads at the end, once every client has
  gone, against the same service's figures at READY (a leak shows as a
  difference);
- for each service restart: kill to READY, and READY to the moment every
  client that lived through it had a verified result again.
"""

from __future__ import annotations

import math
import random
import select
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aether.client import Client
from aether.errors import AetherError

from . import load_schema as ls
from .load import (
    ServiceRun,
    _baseline,
    _latency_summary,
    _vitals_dict,
    _warnings,
    client_errors,
    probe,
)
from .load_client import soak_body
from .load_procs import ChildSet, ForkedChild, Vitals, settle, vitals
from .load_records import Kind, Outcome, account, client_file, read_journals, read_records
from .load_schema import Heap

# A client with no verified result this long after the service's READY has
# not come back (a restart closer than this to the end of the soak is not judged).
NEVER_BACK_AFTER_NS = 10_000_000_000
# Read the service's Python heap every this many vitals samples.
HEAP_EVERY = 10


def _heap(path: Path) -> Heap | None:
    """The service's Python heap, through a short session of its own (none
    is kept open: a forked client would inherit it)."""
    try:
        with Client(path, schema=ls.schema, transport="socket", timeout=5) as client:
            result: Heap = client.call(ls.LoadHeap(), timeout=10)
            return result
    except AetherError:
        return None  # the service is being restarted


@dataclass
class Lifetime:
    """One service process of the soak."""

    pid: int
    ready: float  # monotonic s
    baseline: Vitals
    samples: list[Vitals] = field(default_factory=list)
    # t, blocks, threads, malloc in use, malloc free, malloc mapped
    heap: list[tuple[float, int, int, int, int, int]] = field(default_factory=list)
    killed_at: float | None = None


@dataclass
class Restart:
    kill_ns: int
    ready_ns: int
    clients: set[int] = field(default_factory=set)  # alive across the restart
    reaped_ns: int = 0  # the killed service reaped; the new one starts


def _sums(pts: list[tuple[float, float]]) -> tuple[float, float]:
    """Centred sums (Sxx, Sxy) of one lifetime's points."""
    mt = sum(t for t, _ in pts) / len(pts)
    mv = sum(v for _, v in pts) / len(pts)
    return (sum((t - mt) ** 2 for t, _ in pts), sum((t - mt) * (v - mv) for t, v in pts))


def pooled_slope(series: list[list[tuple[float, float]]]) -> float | None:
    """Least-squares slope per second with one intercept per series and one
    common slope (a restart starts a new series: its drop is not growth)."""
    sxx = sxy = 0.0
    for pts in series:
        if len(pts) >= 3:
            lxx, lxy = _sums(pts)
            sxx += lxx
            sxy += lxy
    return sxy / sxx if sxx else None


def _slope(pts: list[tuple[float, float]]) -> float | None:
    """Least-squares slope (per second) of one series, None under 3 points."""
    if len(pts) < 3:
        return None
    sxx, sxy = _sums(pts)
    return sxy / sxx if sxx else None


def _per_hour(per_s: float | None, scale: float = 1.0) -> float | None:
    return per_s * 3600 * scale if per_s is not None else None


KIB_TO_MIB = 1 / 1024


def slope_mib_per_hour(lifetimes: list[Lifetime], warmup: float,
                       min_fit: float = 0.0) -> dict[str, Any]:
    """RSS growth after warm-up: the steady state, not the warm-up.

    Within each service lifetime, the samples from ``warmup`` seconds after
    its READY are fitted; a lifetime whose fitted samples span less than
    ``min_fit`` seconds is listed but left out of the pooled figure (what
    it would fit is the tail of its own warm-up). The pooled slope has one
    intercept per lifetime and one common slope, so a restart's drop is not
    counted as shrinking. Fitted the same way: the private anonymous memory
    (RSS without file pages and the mapping transport's shared rings, which
    come and go with the sessions), the Python heap (allocated blocks) and
    the C allocator's bytes in use and kept free; and, per lifetime, the
    RSS slope over the last half of its fitted window alone, which tells a
    plateau (near 0) from a steady leak (as steep as the whole)."""
    per: list[dict[str, Any]] = []
    series: dict[str, list[list[tuple[float, float]]]] = {
        k: [] for k in ("rss", "anon", "blocks", "malloc_in_use", "malloc_free")}
    for life in lifetimes:
        after = [s for s in life.samples if s.t - life.ready >= warmup]
        heap = [h for h in life.heap if h[0] - life.ready >= warmup]
        pts = [(s.t - life.ready, float(s.rss_kib)) for s in after]
        span = pts[-1][0] - pts[0][0] if len(pts) >= 2 else 0.0
        fitted = len(pts) >= 3 and span >= min_fit
        late = [p for p in pts if p[0] >= (pts[0][0] + pts[-1][0]) / 2] if pts else []
        per.append({
            "pid": life.pid, "fitted": fitted, "samples": len(pts), "seconds": span,
            "lifetime_s": ((life.killed_at or (life.samples[-1].t if life.samples
                                               else life.ready)) - life.ready),
            "mib_per_hour": _per_hour(_slope(pts), KIB_TO_MIB),
            "last_half_mib_per_hour": _per_hour(_slope(late), KIB_TO_MIB),
            "anon_mib_per_hour": _per_hour(_slope(
                [(s.t - life.ready, float(s.anon_kib)) for s in after]), KIB_TO_MIB),
            "rss_kib_first": pts[0][1] if pts else None,
            "rss_kib_last": pts[-1][1] if pts else None,
            "rss_kib_max": max((r for _, r in pts), default=None),
            # every sample: seconds since READY, RSS KiB, fds, threads, anon KiB, shmem KiB
            "samples_t_rss_fds_threads_anon_shmem": [
                (round(s.t - life.ready, 3), s.rss_kib, s.fds, s.threads, s.anon_kib,
                 s.shmem_kib) for s in life.samples],
            # the Python heap and the C allocator beside the RSS
            "heap_t_blocks_threads_malloc_in_use_free_mapped": [
                (round(h[0] - life.ready, 3), *h[1:]) for h in life.heap]})
        if not fitted:
            continue
        series["rss"].append(pts)
        series["anon"].append([(s.t - life.ready, float(s.anon_kib)) for s in after])
        series["blocks"].append([(h[0] - life.ready, float(h[1])) for h in heap])
        series["malloc_in_use"].append([(h[0] - life.ready, float(h[3])) for h in heap])
        series["malloc_free"].append([(h[0] - life.ready, float(h[4])) for h in heap])
    pooled = {k: pooled_slope(v) for k, v in series.items()}
    return {
        "warmup_s": warmup, "min_fit_s": min_fit,
        "lifetimes_fitted": len(series["rss"]),
        "pooled_mib_per_hour": _per_hour(pooled["rss"], KIB_TO_MIB),
        "anon_mib_per_hour": _per_hour(pooled["anon"], KIB_TO_MIB),
        "heap_blocks_per_hour": _per_hour(pooled["blocks"]),
        "malloc_in_use_mib_per_hour": _per_hour(pooled["malloc_in_use"], 1 / 2**20),
        "malloc_free_mib_per_hour": _per_hour(pooled["malloc_free"], 1 / 2**20),
        "samples": sum(len(p) for p in series["rss"]), "lifetimes": per}


def run_soak(minutes: float, *, clients: int = 16, transports: tuple[str, ...] = (
        "memory", "socket", "mapping"), client_kill_every: float = 10.0,
        service_kill_every: float | None = 300.0, warmup: float = 60.0,
        min_fit: float = 0.0, sample_every: float = 1.0, seed: int = 7,
        log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Soak for ``minutes``; kills come at uniformly random intervals of 0.5x
    to 1.5x their mean (seconds); ``service_kill_every=None``: one service
    for the whole soak (clients are still killed). ``warmup`` and
    ``min_fit``: see :func:`slope_mib_per_hour`."""
    rng = random.Random(seed)
    row: dict[str, Any] = {"minutes": minutes, "clients": clients, "seed": seed,
                           "client_kill_every_s": client_kill_every,
                           "service_kill_every_s": service_kill_every, "warmup_s": warmup,
                           "min_fit_s": min_fit}
    with ServiceRun() as run, ChildSet() as kids:
        run.start()
        life = Lifetime(run.pid, time.monotonic(), _baseline(run.pid))
        lifetimes = [life]
        usable = []
        skipped = {}
        for t in transports:
            why = probe(run.socket, t)
            if why:
                skipped[t] = why
            else:
                usable.append(t)
        if not usable:
            row["skipped"] = skipped
            return row
        settle(run.pid, life.baseline, 5.0)
        alive: dict[int, ForkedChild] = {}
        transport_of: dict[int, str] = {}
        killed: set[int] = set()
        replaced: list[tuple[int, int]] = []
        crashed: list[str] = []
        restarts: list[Restart] = []
        next_cid = 1

        def spawn(replacing: int | None = None) -> None:
            """A new client: over the transport of the client it is
            ``replacing`` or, for the first ones, in turn over the transports.
            A replacement keeps the transport so that the mix stays the
            same all along: each mapping session maps its rings into the
            service, so a mix drifting at random would show in the RSS as
            growth or shrinking that is only the mix."""
            nonlocal next_cid
            cid = next_cid
            if replacing is not None:
                replaced.append((replacing, cid))
            next_cid += 1
            transport_of[cid] = (transport_of[replacing] if replacing is not None
                                else usable[cid % len(usable)])
            alive[cid] = kids.fork(soak_body(str(run.socket), transport_of[cid], cid,
                                             run.records, seed * 100_003 + cid))

        def every(mean: float | None) -> float:
            if mean is None:
                return math.inf
            return time.monotonic() + rng.uniform(0.5, 1.5) * mean

        for _ in range(clients):
            spawn()
        start = time.monotonic()
        end = start + minutes * 60
        next_sample = start
        next_client_kill = every(client_kill_every)
        next_service_kill = every(service_kill_every)
        last_log = start
        try:
            while (now := time.monotonic()) < end:
                if now >= next_sample:
                    v = vitals(run.pid)
                    if v is not None:
                        life.samples.append(v)
                    next_sample += sample_every
                    if len(life.samples) % HEAP_EVERY == 1:
                        heap = _heap(run.socket)
                        if heap is not None:
                            life.heap.append((time.monotonic(), heap.blocks, heap.threads,
                                              heap.malloc_in_use, heap.malloc_free,
                                              heap.malloc_mapped))
                if now >= next_client_kill and alive:
                    cid = rng.choice(sorted(alive))
                    alive.pop(cid).kill()
                    killed.add(cid)
                    spawn(replacing=cid)
                    next_client_kill = every(client_kill_every)
                if now >= next_service_kill:
                    kill_ns = time.monotonic_ns()
                    life.killed_at = time.monotonic()
                    run.kill()
                    reaped_ns = time.monotonic_ns()
                    run.start()
                    ready_ns = time.monotonic_ns()
                    life = Lifetime(run.pid, ready_ns / 1e9, _baseline(run.pid))
                    lifetimes.append(life)
                    restarts.append(Restart(kill_ns, ready_ns, set(alive), reaped_ns))
                    log(f"soak: service restarted in {(ready_ns - kill_ns) / 1e9:.2f} s "
                        f"(pid {run.pid})")
                    next_service_kill = every(service_kill_every)
                for cid, child in list(alive.items()):
                    if child.poll() is not None:
                        crashed.append(f"client {cid} exited by itself with {child.returncode}")
                        del alive[cid]
                        spawn(replacing=cid)
                if now - last_log >= 30:
                    last_log = now
                    s = life.samples[-1] if life.samples else life.baseline
                    log(f"soak: {(now - start) / 60:.1f}/{minutes} min, service rss "
                        f"{s.rss_kib / 1024:.1f} MiB, {s.fds} fds, {s.threads} threads, "
                        f"{len(killed)} clients killed, {len(restarts)} restarts")
                wait = min(next_sample, next_client_kill, next_service_kill, end) \
                    - time.monotonic()
                if wait > 0:
                    # Woken early by a client that exits (pidfds are readable then).
                    select.select([c.pidfd for c in alive.values()], [], [], wait)
        except BaseException:
            # Ctrl-C (or the harness failing): end every client now rather than
            # wait for each to finish its call on a possibly busy machine.
            kids.kill_all()
            raise
        finally:
            alive_mix = Counter(transport_of[cid] for cid in alive)
            for child in alive.values():
                child.send(stop=True)
            stopped_at = time.monotonic()
            if not kids.wait_all(30):
                crashed.append("some clients did not stop within 30 s of being asked")
            kids.kill_all()
        # Every service process runs the same code: idle, each holds what the
        # first held at READY, before any client existed. (A restarted one's
        # own READY figures already count clients that were waiting for it.)
        idle = lifetimes[0].baseline
        quiet = settle(run.pid, idle, 20.0)
        code = run.stop()
        journal = read_journals(run.records)
        all_cids = range(1, next_cid)
        recs = {cid: read_records(client_file(run.records, cid)) for cid in all_cids}
        errors = client_errors(run.records)
    acc = account(((cid, recs[cid]) for cid in all_cids), journal, killed=killed,
                  restarts=[(r.kill_ns, r.ready_ns) for r in restarts])
    recovery = _recovery(restarts, recs, killed, int(stopped_at * 1e9))
    row.update(
        transports=usable, skipped_transports=skipped, seconds=stopped_at - start,
        accounting=asdict(acc), clean=acc.clean and not crashed,
        clients_started=next_cid - 1, clients_killed=len(killed),
        # each replacement: the client killed (or crashed), the one started in its place
        replacements=[(old, transport_of[old], new, transport_of[new])
                      for old, new in replaced],
        clients_alive_by_transport_at_end=dict(alive_mix),
        restarts=len(restarts), recovery=recovery,
        rss_growth=slope_mib_per_hour(lifetimes, warmup, min_fit),
        service_baseline=_vitals_dict(idle), service_quiet=_vitals_dict(quiet),
        fds_leaked=(quiet.fds - idle.fds) if quiet else None,
        threads_leaked=(quiet.threads - idle.threads) if quiet else None,
        fds_max=max((s.fds for lt in lifetimes for s in lt.samples), default=None),
        rss_kib_max=max((s.rss_kib for lt in lifetimes for s in lt.samples), default=None),
        latency={k.name.lower(): _latency_summary(
            [r[3] for cid in all_cids for r in recs[cid]
             if r[1] == k and r[2] == Outcome.OK]) for k in Kind},
        service_exit=code, problems=crashed, client_errors=errors,
        service_warnings=_warnings(run.stderr),
    )
    return row


def _recovery(restarts: list[Restart], recs: dict[int, list[tuple[int, int, int, int, int]]],
              killed: set[int], stopped_ns: int) -> list[dict[str, Any]]:
    """Per restart: kill to READY, and READY to the last client's first
    verified result after the kill (clients killed before they recovered are
    left out, and so is a restart too close to the end to tell)."""
    out = []
    for r in restarts:
        back: dict[int, float] = {}
        missing = []
        for cid in sorted(r.clients):
            first = next((end for _s, _k, outcome, _l, end in recs.get(cid, [])
                          if end > r.kill_ns and outcome == Outcome.OK), None)
            if first is None:
                if cid not in killed and stopped_ns - r.ready_ns > NEVER_BACK_AFTER_NS:
                    missing.append(cid)
                continue
            back[cid] = max(0, first - r.ready_ns) / 1e9
        out.append({
            "restart_s": (r.ready_ns - r.kill_ns) / 1e9,
            "kill_to_reaped_s": (r.reaped_ns - r.kill_ns) / 1e9,
            "start_to_ready_s": (r.ready_ns - r.reaped_ns) / 1e9,
            "clients": len(back),
            "all_back_s": max(back.values(), default=None),
            "median_back_s": sorted(back.values())[len(back) // 2] if back else None,
            "never_back": missing,
        })
    return out
