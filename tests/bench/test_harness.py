"""The benchmark harness measured for real, with small counts: floors, raw
sockets and the memory transport, each server a real process; the JSON
schema, the skip handling and the placements."""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aether.bench import procs
from aether.bench.mechanisms import (
    MECHANISM_IDS,
    AetherVariant,
    Mechanism,
    Served,
    ShmFloor,
    all_mechanisms,
    make_payload,
)
from aether.bench.shmfloor import PeerGone, ShmPair
from aether.bench.suite import Config, Runner

MiB = 1 << 20
KINDS = {"latency", "throughput"}
FIGURES = ("p50_us", "p99_us", "mean_us", "calls_per_s", "gbps")


def tiny(only: set[str], **over: object) -> Config:
    cfg = Config(repeats=2, latency_counts={64: (20, 200), 4096: (10, 50)},
                 pinned_sizes=(64,), bulk_counts={MiB: (1, 3)}, clients=(1, 2),
                 load_seconds=0.2, rss_sessions=4, only=frozenset(only))
    for key, value in over.items():
        setattr(cfg, key, value)
    return cfg


@pytest.fixture(scope="module")
def report():
    ids = {"floor.spin", "floor.eventfd", "floor.memcpy", "floor.procmem", "raw.seqpacket",
           "raw.stream", "aether.memory", "aether.mapping.spin"}
    return Runner(tiny(ids)).run()


def check_schema(doc: dict) -> None:
    assert isinstance(doc["results"], list) and doc["results"]
    assert {"python", "kernel", "cpus", "date"} <= set(doc["machine"])
    for row in doc["results"]:
        assert row["mechanism"] in MECHANISM_IDS
        assert row["kind"] in KINDS
        assert row["pinning"] in procs.PLACEMENTS
        assert isinstance(row["payload_bytes"], int) and row["payload_bytes"] > 0
        assert isinstance(row["clients"], int) and row["clients"] >= 1
        if "skipped" in row:
            assert isinstance(row["skipped"], str) and row["skipped"]
            assert not any(k in row for k in FIGURES), row  # a skip is never a zero
        else:
            figures = [row[k] for k in FIGURES if k in row]
            assert figures, row
            assert all(isinstance(v, int | float) and v > 0 and math.isfinite(v)
                       for v in figures), row
    for goal in doc["goals"]:
        assert goal["verdict"] in ("met", "not met", "skipped")
        assert ("measured" in goal) == (goal["verdict"] != "skipped")


def test_json_schema_and_figures(report, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    report.write_json(str(out))
    doc = json.loads(out.read_text())
    check_schema(doc)
    assert doc["complete"] is True
    rows = {(r["mechanism"], r["kind"], r["payload_bytes"], r["pinning"], r["clients"]): r
            for r in doc["results"]}
    for mech in ("floor.spin", "floor.eventfd", "raw.seqpacket", "raw.stream",
                 "aether.memory"):
        for size in (64, 4096):
            row = rows[(mech, "latency", size, "unpinned", 1)]
            assert "skipped" not in row, row
            assert row["p50_us"] <= row["p99_us"]
            assert len(row["runs_p50_us"]) == 2  # median over the repeats
    for mech in ("floor.memcpy", "floor.procmem", "floor.eventfd", "raw.stream",
                 "aether.memory"):
        row = rows[(mech, "throughput", MiB, "unpinned", 1)]
        assert row["gbps"] > 0, row
    assert not any(r["mechanism"] == "floor.procmem" and r["kind"] == "latency"
                   for r in doc["results"])  # a bulk floor only
    assert rows[("aether.memory", "throughput", 64, "unpinned", 2)]["calls_per_s"] > 0
    assert rows[("raw.seqpacket", "throughput", 64, "unpinned", 2)]["calls_per_s"] > 0
    rss = {e["mechanism"]: e for e in doc["service_rss"]}
    assert rss["aether.memory"]["rss_bytes"] > 0 and rss["aether.memory"]["sessions"] == 4
    assert rss["raw.seqpacket"]["rss_bytes"] > 0


def test_mapping_bulk_is_measured_with_and_without_the_payload_crc(report) -> None:
    from aether.bench.goals import evaluate

    row = next(r for r in report.results if r["mechanism"] == "aether.mapping.spin"
               and r["kind"] == "throughput" and r["payload_bytes"] == MiB)
    assert row["gbps"] > 0 and row["gbps_payload_unchecked"] > 0, row
    from rich.console import Console

    from aether.bench.render import throughput_table

    console = Console(width=200, record=True)
    mechs = [m for m in all_mechanisms() if m.id == "aether.mapping.spin"]
    console.print(throughput_table(report, mechs, [MiB]))
    assert "aether.mapping.spin, checksum=False" in console.export_text()
    big = dict(row, payload_bytes=64 * MiB)
    memcpy = {"mechanism": "floor.memcpy", "kind": "throughput", "payload_bytes": 64 * MiB,
              "pinning": "unpinned", "clients": 1, "gbps": row["gbps_payload_unchecked"] * 2}
    (goal,) = [g for g in evaluate([big, memcpy], [], 2) if "checksum=False" in g["goal"]]
    assert goal["measured"] == 0.5 and goal["verdict"] == "not met"


def test_memory_bulk_note_says_how_it_was_measured(report) -> None:
    from aether.bench.mechanisms import sink_available

    row = next(r for r in report.results if r["mechanism"] == "aether.memory"
               and r["kind"] == "throughput" and r["payload_bytes"] == MiB)
    if sink_available():
        assert "Client.loan" in row["note"]  # written once, into the parameter block
    else:
        assert "aether.echo" in row["note"]


def test_busy_spin_is_not_run_on_one_cpu(report) -> None:
    row = next(r for r in report.results if r["mechanism"] == "floor.spin"
               and r["pinning"] == "same-cpu")
    assert "busy-spin" in row["skipped"]
    eventfd = next(r for r in report.results if r["mechanism"] == "floor.eventfd"
                   and r["pinning"] == "same-cpu")
    assert "skipped" not in eventfd and eventfd["p50_us"] > 0


def test_cross_cpu_row_or_reason(report) -> None:
    row = next(r for r in report.results if r["mechanism"] == "raw.seqpacket"
               and r["pinning"] == "cross-cpu")
    if len(os.sched_getaffinity(0)) < 2:
        assert "one CPU" in row["skipped"]
    else:
        assert row["p50_us"] > 0


def test_mapping_rows_measured_or_skipped_with_the_reason(report) -> None:
    from aether.bench.mechanisms import aether_unavailable

    rows = [r for r in report.results if r["mechanism"] == "aether.mapping.spin"]
    assert rows
    if aether_unavailable("mapping"):
        assert all(r["skipped"] == "mapping transport not available in this build"
                   for r in rows)
    else:
        assert any("p50_us" in r for r in rows)


def test_samples_kept_for_the_plot(report, tmp_path: Path) -> None:
    samples = report.samples[("floor.eventfd", 64, "unpinned")]
    assert len(samples) == 200 and all(s > 0 for s in samples)
    pytest.importorskip("matplotlib", reason="matplotlib comes with the bench extra")
    from aether.bench.plot import write_plot

    out = tmp_path / "bench.png"
    write_plot(report, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_prints_every_mechanism_and_ratio(report) -> None:
    from rich.console import Console

    from aether.bench.render import print_report

    console = Console(width=200, record=True)
    runner_mechs = [m for m in all_mechanisms() if m.id in {r["mechanism"]
                                                            for r in report.results}]
    print_report(report, runner_mechs, console, [64, 4096], [64], [MiB], [1, 2])
    text = console.export_text()
    for mech in ("floor.spin", "raw.seqpacket", "aether.memory", "floor.memcpy"):
        assert mech in text
    assert "x floor.eventfd" in text and "goals (issue 4)" in text


@dataclass
class _Missing(Mechanism):
    pass


@dataclass
class _Broken(Mechanism):
    @contextlib.contextmanager
    def serve(self, server_cpus, *, sink, capacity) -> Iterator[Served]:
        raise RuntimeError("server would not start")
        yield


def test_missing_and_failing_peers_are_skipped_with_reasons() -> None:
    runner = Runner(tiny(set(), placements=("unpinned",)))
    runner.mechanisms = [
        _Missing("pyzmq", bulk=True, requires=("no_such_module_for_aether_tests",)),
        _Broken("raw.stream", bulk=True),
    ]
    report = runner.run()
    check_schema(report.to_json())
    for row in report.results:
        if row["mechanism"] == "pyzmq":
            assert "no_such_module_for_aether_tests" in row["skipped"]
        else:
            assert row["skipped"] == "failed: RuntimeError: server would not start"
    assert len(report.results) == 2 * 3  # 2 latency sizes + 1 bulk size, each


def test_a_hung_peer_costs_one_row() -> None:
    r, w = os.pipe()
    try:
        with pytest.raises(procs.BenchTimeout), procs.time_limit(0.2):
            os.read(r, 1)  # blocks forever without the limit
    finally:
        os.close(r)
        os.close(w)


def test_spin_floor_notices_a_dead_server() -> None:
    pair = ShmPair.create(4096, eventfd=False)
    try:
        with pytest.raises(PeerGone):
            pair.caller(make_payload(64), alive=lambda: False)()
    finally:
        pair.close()


def test_floor_echoes_the_payload_through_another_process() -> None:
    mech = ShmFloor("floor.eventfd", eventfd=True)
    with mech.serve(None, sink=False, capacity=65536) as served:
        ep = served.connect()
        for size in (1, 64, 65536):
            payload = os.urandom(size)
            assert ep.caller(payload)() == payload


def test_aether_variants_are_transport_and_spin() -> None:
    variants = {m.id: m for m in all_mechanisms() if isinstance(m, AetherVariant)}
    assert variants["aether.mapping.blocking"].transport == "mapping"
    assert variants["aether.mapping.blocking"].client_spin == 0.0
    assert variants["aether.mapping.blocking"].service_spin_us == 0
    assert variants["aether.mapping.spin"].busy
    assert set(variants) == {"aether.memory", "aether.mapping.spin", "aether.mapping.blocking",
                             "aether.socket"}


def test_pinning_every_thread_and_restoring() -> None:
    all_cpus = os.sched_getaffinity(0)
    one = min(all_cpus)
    with procs.client_pinned(frozenset({one})):
        assert os.sched_getaffinity(0) == {one}
    assert os.sched_getaffinity(0) == all_cpus


def test_orphaned_peer_server_goes_with_its_parent(tmp_path: Path) -> None:
    """A benchmark killed by SIGKILL leaves no peer server (or bus) behind."""
    import select
    import signal
    import subprocess
    import sys

    from aether.testing import python_env

    victim = subprocess.Popen([sys.executable, "-c", (
        "import sys; from aether.bench.procs import ServerProcess; "
        f"s = ServerProcess('aether.bench.servers', ['seqpacket', '--path', "
        f"{str(tmp_path / 's.sock')!r}]); print(s.pid, flush=True); sys.stdin.read()")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=python_env())
    try:
        assert victim.stdout is not None
        server_pid = int(victim.stdout.readline())
        pidfd = os.pidfd_open(server_pid)
    finally:
        victim.kill()
        victim.wait(10)
    readable: list[int] = []
    try:
        readable, _, _ = select.select([pidfd], [], [], 15)
        assert readable, "the orphaned server is still running"
    finally:
        os.close(pidfd)
        if not readable:
            os.kill(server_pid, signal.SIGKILL)


def test_a_size_over_the_socket_transports_limit_is_its_limit_not_a_failure() -> None:
    """The socket transport carries a payload in one message, and its client
    asks for socket buffers of 4 MiB (the kernel may grant less): a 16 MiB
    bulk row is refused with LIMITS_EXCEEDED, and the row says it met the
    transport's limit rather than "failed"."""
    size = 16 * MiB
    runner = Runner(tiny({"aether.socket"}, bulk_counts={size: (1, 1)}))
    mech = next(m for m in runner.mechanisms if m.id == "aether.socket")
    assert isinstance(mech, AetherVariant)
    with mech.session():
        runner._bulk(mech)
    (row,) = runner.report.results
    assert row["payload_bytes"] == size
    assert row["skipped"].startswith("over this transport's limit (not a fault): "), row
    assert "LIMITS_EXCEEDED" in row["skipped"]
