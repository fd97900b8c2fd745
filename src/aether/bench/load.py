"""``aether bench load``: many client processes against one real service,
every call counted.

Three runs, each against a fresh service subprocess
(:mod:`aether.bench.load_service`, started with ``ServiceProcess``, which
waits for its sd_notify READY):

- :func:`run_load`: per transport, one client alone, then N clients at once,
  each making M echo calls with a unique request (client id, sequence number,
  random payload) as fast as they go. Every result is checked against its
  request and every call is matched with the service's journal: none lost,
  none duplicated, none mismatched. Latency under load is set beside the
  lone client's in the same run; the service's RSS and descriptors are read
  before, during and after.
- :func:`run_sessions`: 1,024 sessions of 8 uids held at once (forked
  children that drop to uids 60001-60008), the service's RSS and descriptors
  while they are held, and the handshake time of one more session from a
  ninth uid.
- the soak (:mod:`aether.bench.load_soak`).

The harness forks the clients (see :mod:`aether.bench.load_procs`) and
kills every process it started, by pid, however the run ends.
"""

from __future__ import annotations

import os
import platform
import select
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aether.client import Client
from aether.errors import AetherError, HandshakeError
from aether.testing import ServiceProcess

from . import load_schema as ls
from .load_client import load_body
from .load_procs import ChildLink, ChildSet, ForkedChild, Vitals, settle, vitals
from .load_records import (
    Kind,
    Outcome,
    account,
    client_file,
    latencies_ns,
    read_journals,
    read_records,
)
from .load_service import ENV_JOURNAL
from .stats import percentile

SERVICE_TARGET = "aether.bench.load_service:service"
TRANSPORTS = ("memory", "socket", "mapping")
FIRST_UID = 60001


def machine() -> dict[str, Any]:
    """Where and when the figures were taken."""
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "nproc": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "cpu": cpu,
        "python": platform.python_version(),
        "loadavg": os.getloadavg()[0],
    }


class ServiceRun(AbstractContextManager["ServiceRun"]):
    """The load service in a subprocess, in a fresh root-owned 0755 directory
    (other uids may reach its 0666 socket), with its journal and the clients'
    records beside it. ``restart`` kills it and starts another on the same
    socket."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="aether-load-"))
        os.chmod(self.dir, 0o755)
        self.records = self.dir / "records"
        self.records.mkdir(mode=0o700)
        self.socket = self.dir / "load.ctl"
        self.process: ServiceProcess | None = None
        self.stderr = ""

    def start(self) -> ServiceRun:
        self.process = ServiceProcess(
            SERVICE_TARGET, self.socket, args=["--mode", "0666"],
            env={ENV_JOURNAL: str(self.records), "AETHER_RUNTIME_DIR": str(self.dir)},
        ).start(timeout=60)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.stderr += self.process.stderr_text()

    def stop(self) -> int:
        """SIGTERM and wait; the exit code (0: it stopped cleanly)."""
        if self.process is None:
            return 0
        code = self.process.stop()
        self.stderr += self.process.stderr_text()
        self.process = None
        return code

    def __exit__(self, *exc: object) -> None:
        try:
            if self.process is not None:
                self.process.kill()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def probe(path: Path, transport: str) -> str:
    """Why ``transport`` cannot be used with this client and service ("" if it can)."""
    try:
        with Client(path, schema=ls.schema, transport=transport, timeout=10) as client:
            if client.transport != transport:
                return f"the session fell back to {client.transport}"
    except ValueError as exc:
        return f"this build's client has no {transport!r} transport ({exc})"
    except HandshakeError as exc:
        return f"the service refused it: {exc}"
    return ""


def _baseline(pid: int) -> Vitals:
    """The service's vitals just after READY, before any client."""
    v = vitals(pid)
    if v is None:
        raise AetherError(f"the load service (pid {pid}) exited at start")
    return v


def _vitals_dict(v: Vitals | None) -> dict[str, int] | None:
    if v is None:
        return None
    d = asdict(v)
    d.pop("t")
    return d


def _latency_summary(values_ns: list[int]) -> dict[str, float]:
    values = sorted(values_ns)
    if not values:
        return {"p50_us": float("nan"), "p99_us": float("nan"), "p999_us": float("nan"),
                "max_us": float("nan")}
    return {
        "p50_us": percentile(values, 50) / 1000,
        "p99_us": percentile(values, 99) / 1000,
        "p999_us": percentile(values, 99.9) / 1000,
        "max_us": values[-1] / 1000,
    }


def _drive(children: list[ForkedChild], pid: int, timeout: float,
           on_sample: Callable[[Vitals], None]) -> list[str]:
    """Wait for ``children`` to exit, sampling the service ``pid`` every
    quarter second; the problems seen (non-zero exits, timeouts)."""
    problems: list[str] = []
    deadline = time.monotonic() + timeout
    pending = {c.pidfd: c for c in children if c.poll() is None}
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            problems.append(f"{len(pending)} clients still running after {timeout:.0f} s")
            for c in pending.values():
                c.kill()
            break
        ready, _, _ = select.select(list(pending), [], [], min(0.25, remaining))
        for fd in ready:
            c = pending.pop(fd)
            c.wait(5)
        sample = vitals(pid)
        if sample is not None:
            on_sample(sample)
    for c in children:
        if c.returncode not in (0, None):
            problems.append(f"client pid {c.pid} exited with {c.returncode}")
    return problems


def _clients_round(run: ServiceRun, kids: ChildSet, transport: str, first_cid: int,
                   clients: int, calls: int, payload: int, seed: int,
                   rate: float = 0.0) -> dict[str, Any]:
    """Fork ``clients`` clients, start them together, wait for them; the
    round's timing, peak vitals and problems. ``rate``: calls/s per client
    (0: back to back)."""
    children = [
        kids.fork(load_body(str(run.socket), transport, first_cid + i, calls, payload,
                            run.records, seed + first_cid + i, rate=rate))
        for i in range(clients)
    ]
    problems: list[str] = []
    for c in children:
        msg = c.read(120.0)
        if msg is None or not msg.get("ready"):
            problems.append(f"client pid {c.pid} did not connect: {msg}")
    peak: dict[str, int] = {"rss_kib": 0, "fds": 0, "threads": 0}

    def sample(v: Vitals) -> None:
        for k in peak:
            peak[k] = max(peak[k], getattr(v, k))

    go = time.monotonic_ns()
    for c in children:
        c.send(go=go / 1e9)
    timeout = max(300.0, clients * calls / 200, 2 * calls / rate if rate else 0.0)
    problems += _drive(children, run.pid, timeout, sample)
    return {"go_ns": go, "peak": peak, "problems": problems,
            "cids": list(range(first_cid, first_cid + clients))}


def _round_figures(rnd: dict[str, Any], recs: dict[int, list[Any]]) -> dict[str, Any]:
    """Latency and throughput of one round of clients."""
    lat = _latency_summary([x for cid in rnd["cids"] for x in latencies_ns(recs[cid], {Kind.ECHO})])
    ends = [r[4] for cid in rnd["cids"] for r in recs[cid]]
    span = (max(ends) - rnd["go_ns"]) / 1e9 if ends else float("nan")
    ok = sum(1 for cid in rnd["cids"] for r in recs[cid] if r[2] == Outcome.OK)
    return {**lat, "calls_per_s": ok / span if span else float("nan"), "seconds": span}


def run_transport(transport: str, *, clients: int, calls: int, payload: int,
                  paced: float = 0.0, paced_calls: int = 1000, seed: int = 1,
                  log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """One transport against one service: a lone client, then ``clients`` at
    once back to back; then, if ``paced`` (a fraction such as 0.5), the same
    clients making ``paced_calls`` calls each at that fraction of the
    throughput the back-to-back round reached."""
    row: dict[str, Any] = {"transport": transport, "clients": clients, "calls_per_client": calls,
                           "payload_bytes": payload}
    with ServiceRun() as run, ChildSet() as kids:
        run.start()
        before = _baseline(run.pid)
        why = probe(run.socket, transport)
        if why:
            row["skipped"] = why
            run.stop()
            return row
        settle(run.pid, before, 5.0)
        log(f"{transport}: 1 client x {calls} calls")
        lone = _clients_round(run, kids, transport, 1, 1, calls, payload, seed)
        log(f"{transport}: {clients} clients x {calls} calls")
        load = _clients_round(run, kids, transport, 1000, clients, calls, payload, seed)
        expected = {cid: calls for cid in [*lone["cids"], *load["cids"]]}
        recs = {cid: read_records(client_file(run.records, cid)) for cid in expected}
        rounds = {"single": _round_figures(lone, recs), "load": _round_figures(load, recs)}
        peak = load["peak"]
        problems = lone["problems"] + load["problems"]
        if paced > 0:
            total = paced * rounds["load"]["calls_per_s"]
            log(f"{transport}: {clients} clients x {paced_calls} calls paced at "
                f"{total:.0f} calls/s in all ({paced:g} of the back-to-back rate)")
            rnd = _clients_round(run, kids, transport, 10_000, clients, paced_calls, payload,
                                 seed, rate=total / clients)
            expected.update({cid: paced_calls for cid in rnd["cids"]})
            recs.update({cid: read_records(client_file(run.records, cid))
                         for cid in rnd["cids"]})
            rounds["paced"] = {**_round_figures(rnd, recs), "fraction": paced,
                               "offered_calls_per_s": total}
            rounds["paced"]["p99_ratio"] = rounds["paced"]["p99_us"] / rounds["single"]["p99_us"]
            peak = {k: max(v, rnd["peak"][k]) for k, v in peak.items()}
            problems += rnd["problems"]
        # The service's own count of finished operations must agree with ours.
        counted = _operations_served(run.socket)
        made = sum(len(r) for r in recs.values())
        if counted != made:
            problems.append(f"the service counted {counted} operations; the clients made {made}")
        after = settle(run.pid, before, 10.0)
        code = run.stop()
        acc = account(((cid, r) for cid, r in recs.items()), read_journals(run.records),
                      expected_per_client=expected)
        row.update(
            accounting=asdict(acc), clean=acc.clean, **rounds,
            p99_ratio=rounds["load"]["p99_us"] / rounds["single"]["p99_us"],
            calls_per_s=rounds["load"]["calls_per_s"], seconds=rounds["load"]["seconds"],
            service_before=_vitals_dict(before), service_peak=peak,
            service_after=_vitals_dict(after),
            fds_leaked=(after.fds - before.fds) if after else None,
            service_operations_served=counted, service_exit=code, problems=problems,
            client_errors=client_errors(run.records), service_warnings=_warnings(run.stderr),
        )
        if code != 0:
            row["service_stderr"] = run.stderr[-2000:]
    return row


def run_load(transports: Iterable[str], *, clients: int, calls: int, payload: int,
             paced: float = 0.0, paced_calls: int = 1000,
             log: Callable[[str], None] = lambda s: None) -> list[dict[str, Any]]:
    return [run_transport(t, clients=clients, calls=calls, payload=payload, paced=paced,
                          paced_calls=paced_calls, log=log)
            for t in transports]


# -- sessions held at once ----------------------------------------------------------
def _holder_body(path: str, transport: str, count: int) -> Callable[[ChildLink], int]:
    """Open ``count`` sessions, check each with a call, hold them until told,
    check them again, close them."""

    def body(link: ChildLink) -> int:
        sessions: list[Client] = []
        try:
            for _ in range(count):
                sessions.append(Client(path, schema=ls.schema, transport=transport,
                                       timeout=30))
            bad = _check(sessions, 0)
            link.send(held=len(sessions), bad=bad,
                      transports=sorted({s.transport for s in sessions}))
        except AetherError as exc:
            link.send(held=len(sessions), error=f"{type(exc).__name__}: {exc}")
        link.wait()  # check again, all still held
        bad = _check(sessions, 1)
        link.send(checked=len(sessions), bad=bad)
        link.wait()  # release
        for s in sessions:
            s.close()
        return 0

    return body


def _check(sessions: list[Client], round_: int) -> int:
    """Calls one echo on every session; how many did not come back right."""
    bad = 0
    for i, s in enumerate(sessions):
        data = f"{os.getuid()}:{i}:{round_}".encode()
        try:
            reply = s.call(ls.LoadEcho(client=os.getuid(), seq=i, data=data), timeout=30)
            if reply.data != data or reply.seq != i:
                bad += 1
        except AetherError:
            bad += 1
    return bad


def _extra_session_body(path: str, transport: str) -> Callable[[ChildLink], int]:
    def body(link: ChildLink) -> int:
        t0 = time.monotonic()
        try:
            with Client(path, schema=ls.schema, transport=transport, timeout=10) as client:
                handshake = time.monotonic() - t0
                reply = client.call(ls.LoadEcho(client=os.getuid(), seq=0, data=b"ninth"))
                link.send(handshake_s=handshake, ok=reply.data == b"ninth",
                          call_s=time.monotonic() - t0)
        except AetherError as exc:
            link.send(error=f"{type(exc).__name__}: {exc}")
        return 0

    return body


def run_sessions(*, sessions: int, uids: int, transport: str = "memory",
                 procs_per_uid: int = 2,
                 log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """``sessions`` sessions from ``uids`` uids (forked children that drop to
    uids 60001 and up) held at once; the service's RSS and descriptors."""
    row: dict[str, Any] = {"sessions": sessions, "uids": uids, "transport": transport}
    if os.geteuid() != 0:
        row["skipped"] = "needs root, to drop children to other uids"
        return row
    procs = uids * procs_per_uid
    share = [sessions // procs + (1 if i < sessions % procs else 0) for i in range(procs)]
    with ServiceRun() as run, ChildSet() as kids:
        run.start()
        before = _baseline(run.pid)
        t0 = time.monotonic()
        holders = [kids.fork(_holder_body(str(run.socket), transport, n),
                             uid=FIRST_UID + i % uids) for i, n in enumerate(share)]
        held = 0
        problems: list[str] = []
        used: set[str] = set()
        for h in holders:
            msg = h.read(600.0) or {"error": "no answer"}
            held += int(msg.get("held", 0))
            used.update(msg.get("transports", []))
            if msg.get("error") or msg.get("bad"):
                problems.append(f"holder pid {h.pid}: {msg}")
        opened_s = time.monotonic() - t0
        log(f"sessions: {held} held after {opened_s:.1f} s")
        during = vitals(run.pid)
        per_uid = _sessions_per_uid(run.socket)
        extra = kids.fork(_extra_session_body(str(run.socket), transport),
                          uid=FIRST_UID + uids)
        ninth = extra.read(60.0) or {"error": "no answer"}
        extra.wait(10)
        for h in holders:
            h.send(check=True)
        for h in holders:
            msg = h.read(600.0) or {"error": "no answer"}
            if msg.get("bad") or "checked" not in msg:
                problems.append(f"holder pid {h.pid} second check: {msg}")
        during2 = vitals(run.pid)
        for h in holders:
            h.send(release=True)
        if not kids.wait_all(120):
            problems.append("holders did not exit")
        after = settle(run.pid, before, 20.0)
        code = run.stop()
    row.update(
        held=held, opened_s=opened_s, transports_used=sorted(used), per_uid=per_uid,
        service_before=_vitals_dict(before), service_held=_vitals_dict(during),
        service_held_after_calls=_vitals_dict(during2), service_after=_vitals_dict(after),
        fds_leaked=(after.fds - before.fds) if after and before else None,
        extra_uid_session=ninth, service_exit=code, problems=problems,
    )
    return row


def client_errors(records: Path, limit: int = 50) -> list[str]:
    """The clients' own account of calls that went wrong (client-N.err):
    monotonic ns, seq, kind, outcome, transport, error."""
    lines: list[str] = []
    for path in sorted(records.glob("client-*.err")):
        cid = path.stem.removeprefix("client-")
        lines += [f"client {cid}: {line}" for line in path.read_text().splitlines()]
    return lines[:limit]


def _warnings(stderr: str, limit: int = 80) -> list[str]:
    """The service's log lines above INFO (it logs at WARNING by default),
    with the tracebacks that follow them."""
    out: list[str] = []
    in_traceback = False
    for line in stderr.splitlines():
        if " WARNING " in line or " ERROR " in line or " CRITICAL " in line:
            out.append(line)
            in_traceback = False
        elif line.startswith("Traceback") or (in_traceback and not line[:4].isdigit()):
            out.append(line)
            in_traceback = True
    return out[:limit]


def _operations_served(path: Path) -> int:
    """``aether.status``'s count (this status call itself is not yet in it)."""
    with Client(path, schema=ls.schema, transport="socket", timeout=30) as client:
        return client.status().operations_served


def _sessions_per_uid(path: Path) -> dict[str, int]:
    """Sessions by uid as the service itself counts them (aether.status);
    the asking session is root's and not counted."""
    with Client(path, schema=ls.schema, transport="socket", timeout=30) as client:
        status = client.status()
    counts: dict[str, int] = {}
    for s in status.session_list:
        if s.pid != os.getpid():
            counts[str(s.uid)] = counts.get(str(s.uid), 0) + 1
    return counts
