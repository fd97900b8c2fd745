"""The tables ``aether bench`` prints: every figure beside its ratio to the
relevant floor or peer measured in the same run, and the goal verdicts.

Ratios: a latency row's p50 is divided by the floor of its own family
(``floor.spin`` for mechanisms that busy-spin, ``floor.eventfd`` for those
that sleep) at the same payload and placement, so ``2.0x`` means twice the
floor's time. Throughput is divided by ``floor.memcpy`` at the same size,
so ``0.5x`` means half the copy bandwidth.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from .mechanisms import Mechanism
from .suite import Report


def size_text(n: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


def _find(results: list[dict[str, Any]], mech: str, kind: str, size: int, pinning: str,
          clients: int = 1) -> dict[str, Any] | None:
    for r in results:
        if (r["mechanism"], r["kind"], r["payload_bytes"], r["pinning"], r["clients"]) == (
                mech, kind, size, pinning, clients) and "skipped" not in r:
            return r
    return None


def _ratio(value: float | None, ref: float | None, digits: int = 1) -> str:
    if value is None or not ref:
        return ""
    return f"{value / ref:.{digits}f}x"


def _skip(text: str, width: int = 70) -> str:
    return "[dim]skipped: " + (text if len(text) <= width else text[:width - 1] + "…") + "[/]"


def latency_table(report: Report, mechanisms: list[Mechanism], pinning: str,
                  sizes: list[int]) -> Table:
    table = Table("mechanism", "payload", "p50 µs", "p99 µs", "mean µs", "calls/s",
                  "p50 vs floor", title=f"echo round trip, {pinning}, 1 client",
                  title_justify="left")
    for mech in mechanisms:
        if not mech.latency:
            continue
        floor_id = "floor.spin" if mech.busy else "floor.eventfd"
        for size in sizes:
            row = next((r for r in report.results if r["mechanism"] == mech.id
                        and r["kind"] == "latency" and r["payload_bytes"] == size
                        and r["pinning"] == pinning), None)
            if row is None:
                continue
            if "skipped" in row:
                table.add_row(mech.id, size_text(size), _skip(row["skipped"]), "", "", "", "")
                continue
            floor = _find(report.results, floor_id, "latency", size, pinning)
            ratio = "" if mech.id == floor_id else (
                _ratio(row["p50_us"], floor and floor["p50_us"]) + f" {floor_id}"
                if floor else "")
            table.add_row(mech.id, size_text(size), f"{row['p50_us']:.1f}",
                          f"{row['p99_us']:.1f}", f"{row['mean_us']:.1f}",
                          f"{row['calls_per_s']:,.0f}", ratio)
        table.add_section()
    return table


def throughput_table(report: Report, mechanisms: list[Mechanism], sizes: list[int]) -> Table:
    cols = []
    for size in sizes:
        cols += [f"{size_text(size)} GB/s", "vs memcpy"]
    table = Table("mechanism", *cols, "note", title="bulk: one-way transfer + 1-byte ack",
                  title_justify="left")
    for mech in mechanisms:
        if not mech.bulk:
            continue
        cells: list[str] = []
        unchecked: list[str] = []
        notes = set()
        for size in sizes:
            row = next((r for r in report.results if r["mechanism"] == mech.id
                        and r["kind"] == "throughput" and r["payload_bytes"] == size
                        and r["clients"] == 1), None)
            floor = _find(report.results, "floor.memcpy", "throughput", size, "unpinned")
            if row is None:
                cells += ["", ""]
            elif "skipped" in row:
                cells += [_skip(row["skipped"], 40), ""]
            else:
                cells += [f"{row['gbps']:.2f}", "" if mech.id == "floor.memcpy" else
                          _ratio(row["gbps"], floor and floor["gbps"], 2)]
                if row.get("note"):
                    notes.add(row["note"])
            gbps = row.get("gbps_payload_unchecked") if row else None
            unchecked += ["", ""] if gbps is None else [
                f"{gbps:.2f}", _ratio(gbps, floor and floor["gbps"], 2)]
        table.add_row(mech.id, *cells, "; ".join(sorted(notes)))
        if any(unchecked):
            table.add_row(f"{mech.id}, checksum=False", *unchecked,
                          "the same loan, header crc only: the payload is not summed")
    return table


def concurrency_table(report: Report, mechanisms: list[Mechanism], clients: list[int],
                      cores: int) -> Table:
    table = Table("mechanism", *[f"{n} client{'s' if n > 1 else ''} calls/s" for n in clients],
                  f"{max(clients)} vs 1", f"goal: 0.8 x {max(clients)} x single / {cores} cores",
                  title="concurrent clients (64 B echo, each client its own process)",
                  title_justify="left")
    for mech in mechanisms:
        if not mech.concurrency:
            continue
        cells, figures = [], {}
        for n in clients:
            row = next((r for r in report.results if r["mechanism"] == mech.id
                        and r["kind"] == "throughput" and r["clients"] == n
                        and r["payload_bytes"] == 64), None)
            if row is None:
                cells.append("")
            elif "skipped" in row:
                cells.append(_skip(row["skipped"], 40))
            else:
                figures[n] = row["calls_per_s"]
                cells.append(f"{row['calls_per_s']:,.0f}")
        one, many = figures.get(1), figures.get(max(clients))
        scale = _ratio(many, one, 2)
        goal = f"{0.8 * max(clients) * one / cores:,.0f}" if one else ""
        table.add_row(mech.id, *cells, scale, goal)
    return table


def rss_table(report: Report) -> Table:
    table = Table("mechanism", "sessions", "RSS idle MiB", "RSS with sessions MiB",
                  "KiB per session", "note", title="service memory with idle sessions",
                  title_justify="left")
    for e in report.rss:
        if "skipped" in e:
            table.add_row(e["mechanism"], str(e["sessions"]), _skip(e["skipped"], 50), "", "",
                          "")
            continue
        table.add_row(e["mechanism"], str(e["sessions"]), f"{e['rss_idle_bytes'] / 2**20:.1f}",
                      f"{e['rss_bytes'] / 2**20:.1f}", f"{e['per_session_bytes'] / 1024:.1f}",
                      e.get("note", ""))
    return table


def goals_table(report: Report) -> Table:
    table = Table("goal", "measured", "target", "verdict", title="goals (issue 4)",
                  title_justify="left")
    style = {"met": "[green]met[/]", "not met": "[red]not met[/]", "skipped": "[dim]skipped[/]"}
    for g in report.goals:
        unit = g.get("unit", "x")
        measured = g.get("measured")
        if measured is None:
            shown = _skip(g.get("reason", ""), 60)
        elif unit == "x":
            shown = f"{measured:.2f}x"
        else:
            shown = f"{measured:,.0f} {unit}"
        target = g.get("target")
        target_text = "" if target is None else (f"{target}x" if unit == "x"
                                                 else f"{target:,} {unit}")
        table.add_row(g["goal"], shown, target_text, style.get(g["verdict"], g["verdict"]))
    return table


def print_report(report: Report, mechanisms: list[Mechanism], console: Console,
                 latency_sizes: list[int], pinned_sizes: list[int], bulk_sizes: list[int],
                 clients: list[int]) -> None:
    console.print(latency_table(report, mechanisms, "unpinned", latency_sizes))
    for pinning in ("same-cpu", "cross-cpu"):
        if any(r["pinning"] == pinning for r in report.results):
            console.print(latency_table(report, mechanisms, pinning, pinned_sizes))
    console.print(throughput_table(report, mechanisms, bulk_sizes))
    cores = report.machine.get("cpus_usable") or 1
    console.print(concurrency_table(report, mechanisms, clients, cores))
    console.print(rss_table(report))
    console.print(goals_table(report))
    m = report.machine
    console.print(f"[dim]{m.get('cpu', '')}, {m.get('cpus_usable')} CPUs usable, Linux "
                  f"{m.get('kernel')}, Python {m.get('python')}, load average at start "
                  f"{m.get('load_avg', [0])[0]:.2f}; wall time {report.wall_s:.1f} s[/]")
