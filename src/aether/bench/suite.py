"""``aether bench``: every mechanism, every figure, one run.

Method (docs/benchmarks.md has the long form): this process is the client;
every server is a separate process started for its row and stopped after
it. A latency run times each round trip with ``perf_counter_ns`` after
warm-ups; a row is the median over ``repeats`` runs of each run's p50, p99,
mean and calls/s (median of medians), each run on a fresh connection. Bulk
is a one-way transfer plus a 1-byte ack; GB/s = bytes / median transfer
time, 1 GB = 10^9 B. A mechanism that cannot run here, or fails, gives rows
with ``skipped`` and the reason, never zeros.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import goals
from .mechanisms import Mechanism, Served, all_mechanisms, make_payload
from .procs import PLACEMENTS, BenchTimeout, client_pinned, placement, rss_bytes, time_limit
from .stats import median_of, summarize_ns

KiB, MiB = 1024, 1024 * 1024
LATENCY_SIZES = (64, 4 * KiB, 64 * KiB)
BULK_SIZES = (1 * MiB, 64 * MiB)
CLIENTS = (1, 4, 16)
SAME_CPU_SPIN = ("busy-spin: two spinners on one CPU hand over only at scheduler ticks, "
                 "so the figure would measure the scheduler")


@dataclass
class Config:
    """How much to measure; :meth:`quick` stays well under a minute."""

    repeats: int = 3
    latency_counts: dict[int, tuple[int, int]] = field(default_factory=lambda: {
        64: (2000, 20000), 4 * KiB: (1000, 5000), 64 * KiB: (500, 3000)})
    pinned_sizes: tuple[int, ...] = (64,)
    placements: tuple[str, ...] = PLACEMENTS
    bulk_counts: dict[int, tuple[int, int]] = field(default_factory=lambda: {
        1 * MiB: (3, 50), 64 * MiB: (3, 15)})
    clients: tuple[int, ...] = CLIENTS
    load_seconds: float = 2.0
    rss_sessions: int = 256
    only: frozenset[str] | None = None  # mechanism ids; None: all
    keep_samples: bool = True

    @classmethod
    def quick(cls) -> Config:
        return cls(
            repeats=1,
            latency_counts={64: (300, 2000), 4 * KiB: (100, 400), 64 * KiB: (50, 200)},
            bulk_counts={1 * MiB: (2, 10), 64 * MiB: (1, 3)},
            clients=(1, 4), load_seconds=0.3, rss_sessions=64)

    @property
    def latency_sizes(self) -> tuple[int, ...]:
        return tuple(sorted(self.latency_counts))

    @property
    def bulk_sizes(self) -> tuple[int, ...]:
        return tuple(sorted(self.bulk_counts))


@dataclass
class Report:
    results: list[dict[str, Any]] = field(default_factory=list)
    rss: list[dict[str, Any]] = field(default_factory=list)
    samples: dict[tuple[str, int, str], list[int]] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    goals: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    complete: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"suite": "aether bench", "machine": self.machine, "wall_s": round(self.wall_s, 1),
                "complete": self.complete,
                "results": self.results, "service_rss": self.rss, "goals": self.goals}

    def write_json(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.to_json(), f, indent=2)


def machine_info() -> dict[str, Any]:
    import importlib.metadata as md

    def version(dist: str) -> str | None:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "python": platform.python_version(), "kernel": platform.release(),
        "machine": platform.machine(), "cpu": cpu, "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "load_avg": list(os.getloadavg()),
        "versions": {d: version(d) for d in ("aether-ipc", "pyzmq", "iceoryx2", "dbus-fast",
                                             "matplotlib")},
    }


def _row(mech: Mechanism, kind: str, size: int, pinning: str, clients: int = 1,
         **figures: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"mechanism": mech.id, "kind": kind, "payload_bytes": size,
                           "pinning": pinning, "clients": clients}
    row.update(figures)
    return row


def _failure(exc: BaseException) -> str:
    """The ``skipped`` reason of a row that could not be measured. A size
    the transport refuses (the socket transport carries a payload in one
    message, which the kernel's socket buffer limit caps) is its limit, not
    a fault, and says so."""
    from aether.errors import LimitsExceededError

    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if isinstance(exc, LimitsExceededError):
        return f"over this transport's limit (not a fault): {first}"[:300]
    return f"failed: {type(exc).__name__}: {first}"[:300]


class Runner:
    def __init__(self, config: Config, progress: Callable[[str], None] | None = None,
                 checkpoint: Callable[[Report], None] | None = None) -> None:
        self.config = config
        self.checkpoint = checkpoint  # called after each mechanism (partial figures)
        self.progress = progress or (lambda text: None)
        self.report = Report()
        self.mechanisms = [m for m in all_mechanisms()
                           if config.only is None or m.id in config.only]

    def run(self) -> Report:
        t0 = time.monotonic()
        self.report.machine = machine_info()
        _raise_fd_limit()
        for mech in self.mechanisms:
            try:
                with (mech.session() if mech.unavailable() is None
                      else contextlib.nullcontext()):
                    self._latency(mech)
                    self._bulk(mech)
                    self._concurrency(mech)
                    self._rss(mech)
            except Exception as exc:  # the shared server did not start
                self._fail_all(mech, _failure(exc))
            if self.checkpoint is not None:
                self.report.wall_s = time.monotonic() - t0
                self.checkpoint(self.report)
        self.report.complete = True
        self.report.results.sort(key=self._order)
        self.report.goals = goals.evaluate(self.report.results, self.mechanisms,
                                           self.report.machine["cpus_usable"])
        self.report.wall_s = time.monotonic() - t0
        return self.report

    def _fail_all(self, mech: Mechanism, reason: str) -> None:
        cfg = self.config
        have = {(r["kind"], r["payload_bytes"], r["pinning"], r["clients"])
                for r in self.report.results if r["mechanism"] == mech.id}
        want = []
        if mech.latency:
            for pin_name in cfg.placements:
                sizes = cfg.latency_sizes if pin_name == "unpinned" else cfg.pinned_sizes
                want += [("latency", size, pin_name, 1) for size in sizes]
        if mech.bulk:
            want += [("throughput", size, "unpinned", 1) for size in cfg.bulk_sizes]
        if mech.concurrency:
            want += [("throughput", 64, "unpinned", n) for n in cfg.clients]
        for kind, size, pin_name, n in want:
            if (kind, size, pin_name, n) not in have:
                self.report.results.append(_row(mech, kind, size, pin_name, n, skipped=reason))
        if mech.rss and not any(e["mechanism"] == mech.id for e in self.report.rss):
            self.report.rss.append({"mechanism": mech.id, "sessions": cfg.rss_sessions,
                                    "skipped": reason})

    def _order(self, row: dict[str, Any]) -> tuple[int, int, int, int, int]:
        ids = [m.id for m in self.mechanisms]
        bulk = row["payload_bytes"] in self.config.bulk_sizes
        return (0 if row["kind"] == "latency" else 1 if bulk else 2,
                PLACEMENTS.index(row["pinning"]), ids.index(row["mechanism"]),
                row["clients"], row["payload_bytes"])

    # -- latency ---------------------------------------------------------------------
    def _latency(self, mech: Mechanism) -> None:
        if not mech.latency:
            return
        cfg = self.config
        reason = mech.unavailable()
        for pin_name in cfg.placements:
            sizes = cfg.latency_sizes if pin_name == "unpinned" else cfg.pinned_sizes
            skip = reason
            place = placement(pin_name)
            if skip is None and isinstance(place, str):
                skip = place
            if skip is None and mech.busy and pin_name == "same-cpu":
                skip = SAME_CPU_SPIN
            if skip is not None:
                for size in sizes:
                    self.report.results.append(_row(mech, "latency", size, pin_name,
                                                    skipped=skip))
                continue
            assert not isinstance(place, str)
            self.progress(f"{mech.id} latency {pin_name}")
            try:
                with client_pinned(place.client), \
                        mech.serve(place.server, sink=False, capacity=max(sizes)) as served:
                    for size in sizes:
                        self.report.results.append(self._latency_row(mech, served, size,
                                                                     pin_name))
            except Exception as exc:  # the server did not start: every size says why
                done = {(r["payload_bytes"]) for r in self.report.results
                        if r["mechanism"] == mech.id and r["pinning"] == pin_name
                        and r["kind"] == "latency"}
                for size in sizes:
                    if size not in done:
                        self.report.results.append(_row(mech, "latency", size, pin_name,
                                                        skipped=_failure(exc)))

    def _latency_row(self, mech: Mechanism, served: Served, size: int,
                     pin_name: str) -> dict[str, Any]:
        warmup, count = self.config.latency_counts[size]
        payload = make_payload(size)
        runs, kept = [], []
        try:
            for samples in self._timed_runs(served.connect, payload, False, warmup, count,
                                            60 + count * 0.005):
                summary = summarize_ns(samples)
                runs.append(summary)
                kept.append((summary["p50_us"], samples))
        except (Exception, BenchTimeout) as exc:
            return _row(mech, "latency", size, pin_name, skipped=_failure(exc))
        figures = median_of(runs)
        if self.config.keep_samples:
            kept.sort(key=lambda t: t[0])
            self.report.samples[(mech.id, size, pin_name)] = kept[len(kept) // 2][1]
        row = _row(mech, "latency", size, pin_name, **_rounded(figures))
        row["runs_p50_us"] = [round(r["p50_us"], 2) for r in runs]
        if served.note:
            row["note"] = served.note
        return row

    # -- bulk ------------------------------------------------------------------------
    def _bulk(self, mech: Mechanism) -> None:
        if not mech.bulk:
            return
        cfg = self.config
        reason = mech.unavailable()
        if reason is not None:
            for size in cfg.bulk_sizes:
                self.report.results.append(_row(mech, "throughput", size, "unpinned",
                                                skipped=reason))
            return
        self.progress(f"{mech.id} bulk")
        for size in cfg.bulk_sizes:
            # a server per size: buffers and blocks sized to the payload, as a user would
            try:
                with mech.serve(None, sink=True, capacity=size) as served:
                    self.report.results.append(self._bulk_row(mech, served, size))
            except Exception as exc:
                self.report.results.append(_row(mech, "throughput", size, "unpinned",
                                                skipped=_failure(exc)))

    def _bulk_row(self, mech: Mechanism, served: Served, size: int) -> dict[str, Any]:
        try:
            fig = self._bulk_runs(served.connect, size)
        except (Exception, BenchTimeout) as exc:
            return _row(mech, "throughput", size, "unpinned", skipped=_failure(exc))
        row = _row(mech, "throughput", size, "unpinned", p50_us=round(fig["p50_us"], 1),
                   mean_us=round(fig["mean_us"], 1), gbps=round(fig["gbps"], 3))
        if served.note:
            row["note"] = served.note
        if served.connect_unchecked is not None:
            # The same loan with checksum=False: the frame's header keeps its crc,
            # the payload (opaque bytes for aether.sink) is not summed on either end.
            try:
                unchecked = self._bulk_runs(served.connect_unchecked, size)
            except (Exception, BenchTimeout) as exc:
                row["gbps_payload_unchecked_skipped"] = _failure(exc)
            else:
                row["gbps_payload_unchecked"] = round(unchecked["gbps"], 3)
        return row

    def _bulk_runs(self, connect: Callable[[], Any], size: int) -> dict[str, float]:
        """GB/s and latency of one-way transfers of ``size``: the median of the runs."""
        warmup, reps = self.config.bulk_counts[size]
        runs = []
        for samples in self._timed_runs(connect, make_payload(size), True, warmup, reps, 120):
            s = summarize_ns(samples)
            s["gbps"] = size / (s["p50_us"] * 1e-6) / 1e9
            runs.append(s)
        return median_of(runs)

    def _timed_runs(self, connect: Callable[[], Any], payload: bytes, sink: bool,
                    warmup: int, count: int, limit: float) -> Iterator[list[int]]:
        """The samples of each repeat: a fresh connection, one verified call,
        ``warmup`` untimed calls, ``count`` timed ones, all within ``limit`` s."""
        for _ in range(self.config.repeats):
            with time_limit(limit):
                ep = connect()
                try:
                    ep.check(payload, sink=sink)
                    samples = ep.samples(payload, warmup, count)
                finally:
                    ep.close()
            yield samples

    # -- concurrent clients -----------------------------------------------------------
    def _concurrency(self, mech: Mechanism) -> None:
        if not mech.concurrency:
            return
        cfg = self.config
        reason = mech.unavailable()
        if reason is not None:
            for n in cfg.clients:
                self.report.results.append(_row(mech, "throughput", 64, "unpinned", n,
                                                skipped=reason))
            return
        self.progress(f"{mech.id} {'/'.join(map(str, cfg.clients))} clients")
        try:
            with mech.serve(None, sink=False, capacity=64 * KiB) as served:
                assert served.spec is not None
                for n in cfg.clients:
                    try:
                        rate = run_load(served.spec, n, cfg.load_seconds)
                    except Exception as exc:
                        self.report.results.append(_row(mech, "throughput", 64, "unpinned", n,
                                                        skipped=_failure(exc)))
                        continue
                    self.report.results.append(_row(mech, "throughput", 64, "unpinned", n,
                                                    calls_per_s=round(rate)))
        except Exception as exc:
            for n in cfg.clients:
                self.report.results.append(_row(mech, "throughput", 64, "unpinned", n,
                                                skipped=_failure(exc)))

    # -- idle sessions ---------------------------------------------------------------
    def _rss(self, mech: Mechanism) -> None:
        if not mech.rss:
            return
        n = self.config.rss_sessions
        entry: dict[str, Any] = {"mechanism": mech.id, "sessions": n}
        reason = mech.unavailable()
        if reason is not None:
            self.report.rss.append({**entry, "skipped": reason})
            return
        self.progress(f"{mech.id} RSS with {n} idle sessions")
        payload = make_payload(64)
        try:
            with mech.serve(None, sink=False, capacity=64) as served, time_limit(300):
                assert served.pid is not None
                before = rss_bytes(served.pid)
                endpoints = []
                try:
                    for _ in range(n):
                        ep = served.connect()
                        endpoints.append(ep)
                        ep.check(payload, sink=False)
                    after = rss_bytes(served.pid)
                finally:
                    for ep in endpoints:
                        try:
                            ep.close()
                        except Exception:
                            pass
            entry.update(rss_idle_bytes=before, rss_bytes=after,
                         per_session_bytes=round((after - before) / n))
            if served.rss_note:
                entry["note"] = served.rss_note
        except (Exception, BenchTimeout) as exc:
            entry["skipped"] = _failure(exc)
        self.report.rss.append(entry)


def _rounded(figures: dict[str, float]) -> dict[str, float]:
    return {k: (round(v) if k == "calls_per_s" else round(v, 2)) for k, v in figures.items()}


def _raise_fd_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def run_load(spec: dict[str, Any], clients: int, seconds: float) -> float:
    """``clients`` load-generator processes calling for ``seconds``; aggregate calls/s."""
    from aether.testing import python_env

    procs = [subprocess.Popen([sys.executable, "-m", "aether.bench.loadgen", json.dumps(spec),
                               str(seconds)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=python_env())
             for _ in range(clients)]
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            if line.strip() != b"READY":
                raise RuntimeError("load generator failed: "
                                   + _last_line(p.stderr.read() if p.stderr else b""))
        for p in procs:  # all connected: start together
            assert p.stdin is not None
            p.stdin.write(b"GO\n")
            p.stdin.flush()
        total = 0.0
        for p in procs:
            out, err = p.communicate(timeout=seconds * 10 + 60)
            if p.returncode != 0:
                raise RuntimeError("load generator failed: " + _last_line(err))
            calls, elapsed = out.split()
            total += int(calls) / float(elapsed)
        return total
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)


def _last_line(data: bytes) -> str:
    lines = data.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else "(no output)"


def only_ids(ids: Iterable[str] | None) -> frozenset[str] | None:
    return frozenset(ids) if ids else None
