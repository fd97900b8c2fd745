"""``aether bench load``: the command (registered in ``aether.cli.bench_cmd``).

Correctness failures (a lost, duplicated or mismatched call, a false
success, a leaked descriptor) make the exit code 1; the speed and size
goals are reported beside their figures, not enforced: the machine decides
those.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

ALL_TRANSPORTS = ("memory", "socket", "mapping")

# The goals (docs/reliability.md).
GOAL_P99_RATIO = 5.0
GOAL_RSS_MIB = 150.0
GOAL_GROWTH_MIB_H = 1.0
GOAL_RECOVERY_S = 1.0
GOAL_EXTRA_HANDSHAKE_S = 1.0


@click.command("load")
@click.option("--clients", type=click.IntRange(0), default=64, show_default=True,
              help="Client processes per transport (0: skip the load run).")
@click.option("--calls", type=click.IntRange(1), default=10_000, show_default=True,
              help="Calls per client.")
@click.option("--payload", type=click.IntRange(0, 60_000), default=256, show_default=True,
              help="Random payload bytes per call.")
@click.option("--transport", "transports", multiple=True,
              type=click.Choice([*ALL_TRANSPORTS, "all"]), default=("all",), show_default=True,
              help="Transport(s) to load (repeat the option); one this build lacks is "
                   "reported as skipped.")
@click.option("--paced", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Then a round paced at this fraction of the back-to-back throughput "
                   "(0: skip): latency at a fixed offered load.")
@click.option("--paced-calls", type=click.IntRange(1), default=1000, show_default=True,
              help="Calls per client in the paced round.")
@click.option("--sessions", type=click.IntRange(0), default=1024, show_default=True,
              help="Sessions held at once (0: skip); needs root.")
@click.option("--uids", type=click.IntRange(1, 5000), default=8, show_default=True,
              help="Distinct uids (60001 and up) the sessions come from.")
@click.option("--soak", "soak_minutes", type=click.FloatRange(0, min_open=True), default=None,
              help="Run the soak for MINUTES instead: mixed traffic, random kills.")
@click.option("--soak-clients", type=click.IntRange(1), default=16, show_default=True)
@click.option("--client-kill-every", type=click.FloatRange(0.1), default=10.0,
              show_default=True, help="Soak: mean seconds between client SIGKILLs.")
@click.option("--service-kill-every", type=click.FloatRange(1), default=600.0,
              show_default=True, help="Soak: mean seconds between service SIGKILLs.")
@click.option("--service-kills/--no-service-kills", default=True, show_default=True,
              help="Soak: SIGKILL and restart the service at random (--no-service-kills: "
                   "one service for the whole soak, for the steady-state RSS slope).")
@click.option("--warmup", type=click.FloatRange(0), default=180.0, show_default=True,
              help="Soak: seconds after each service start left out of the RSS slope.")
@click.option("--min-fit", type=click.FloatRange(0), default=240.0, show_default=True,
              help="Soak: a service lifetime counts in the RSS slope only with at least "
                   "this many seconds of samples after its warm-up.")
@click.option("--seed", type=int, default=7, show_default=True,
              help="Soak: seed of the random kills, payloads and call mix (the same seed "
                   "replays the same choices; another one tries others).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write figures here.")
def load(clients: int, calls: int, payload: int, transports: tuple[str, ...], paced: float,
         paced_calls: int, sessions: int,
         uids: int, soak_minutes: float | None, soak_clients: int, client_kill_every: float,
         service_kill_every: float, service_kills: bool, warmup: float, min_fit: float,
         seed: int, json_path: str | None) -> None:
    """N client processes x M calls per transport against one real service,
    every call counted; sessions of several uids held at once; or a soak."""
    from rich.console import Console

    from aether.bench import load as harness

    out = Console()
    err = Console(stderr=True)

    def log(text: str) -> None:
        err.print(f"[dim]{text}[/dim]")

    chosen = ALL_TRANSPORTS if "all" in transports else tuple(dict.fromkeys(transports))
    report: dict[str, Any] = {"suite": "load", "machine": harness.machine()}
    ok = True

    def save() -> None:
        # after each part: a later part that fails does not lose the earlier figures
        if json_path:
            Path(json_path).write_text(json.dumps(report, indent=2, default=str))
    if soak_minutes is not None:
        from aether.bench.load_soak import run_soak

        service_every = service_kill_every if service_kills else None
        log(f"soak: {soak_minutes} min, {soak_clients} clients, a client killed every "
            f"~{client_kill_every} s, " + (f"the service every ~{service_every} s"
                                           if service_every else "the service never"))
        row = run_soak(soak_minutes, clients=soak_clients, transports=chosen,
                       client_kill_every=client_kill_every,
                       service_kill_every=service_every, warmup=warmup, min_fit=min_fit,
                       seed=seed, log=log)
        report["soak"] = row
        ok = _print_soak(out, row)
    else:
        if clients:
            rows = harness.run_load(chosen, clients=clients, calls=calls, payload=payload,
                                    paced=paced, paced_calls=paced_calls, log=log)
            report["load"] = rows
            save()
            ok = _print_load(out, rows) and ok
        if sessions:
            log(f"sessions: {sessions} from {uids} uids")
            row = harness.run_sessions(sessions=sessions, uids=uids, log=log)
            report["sessions"] = row
            ok = _print_sessions(out, row) and ok
    save()
    if json_path:
        err.print(f"figures written to {json_path}")
    if not ok:
        raise SystemExit(1)


def _print_notes(out: Any, row: dict[str, Any], limit: int = 10) -> None:
    """The first few client errors and service warnings, as they were written."""
    from rich.markup import escape

    for key, label in (("client_errors", "client"), ("service_warnings", "service")):
        lines = row.get(key) or []
        for line in lines[:limit]:
            out.print(f"[yellow]{label}: {escape(line)}[/yellow]", highlight=False)
        if len(lines) > limit:
            out.print(f"[yellow]... {len(lines) - limit} more in the JSON[/yellow]")


def _met(flag: bool | None) -> str:
    return "-" if flag is None else ("[green]yes[/green]" if flag else "[red]NO[/red]")


def _f(x: Any, fmt: str = "{:.1f}") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return fmt.format(x)


def _print_load(out: Any, rows: list[dict[str, Any]]) -> bool:
    from rich.table import Table

    ok = True
    for r in rows:
        if "skipped" in r:
            out.print(f"load over {r['transport']}: skipped ({r['skipped']})")
            continue
        a = r["accounting"]
        good = r["clean"] and not r["problems"] and r["fds_leaked"] == 0
        ok = ok and good
        b, p, f = r["service_before"], r["service_peak"], r["service_after"] or {}
        table = Table("measure", "value", "goal", "met", title=(
            f"load over {r['transport']}: {r['clients']} clients x {r['calls_per_client']} "
            f"calls, {r['payload_bytes']} B payloads"))
        table.add_row("calls ok", f"{a['ok']} of {a['expected_calls']}", "all",
                      _met(a["ok"] == a["expected_calls"]))
        table.add_row("lost / duplicated / mismatched",
                      f"{a['lost'] + a['missing_records']} / {a['duplicated']} / "
                      f"{a['mismatched']}", "0 / 0 / 0", _met(r["clean"]))
        table.add_row("calls/s (all clients)", _f(r["calls_per_s"], "{:.0f}"), "", "")
        table.add_row("p50 / p99 / p99.9 under load",
                      f"{_f(r['load']['p50_us'])} / {_f(r['load']['p99_us'])} / "
                      f"{_f(r['load']['p999_us'])} µs", "", "")
        table.add_row("p50 / p99, one client alone",
                      f"{_f(r['single']['p50_us'])} / {_f(r['single']['p99_us'])} µs", "", "")
        table.add_row("p99 under load / p99 alone", _f(r["p99_ratio"], "{:.1f}x"),
                      f"≤ {GOAL_P99_RATIO:g}x", _met(r["p99_ratio"] <= GOAL_P99_RATIO))
        table.add_row("Little's law: clients / calls per s",
                      _f(r["clients"] / r["calls_per_s"] * 1e6, "{:.0f} µs mean"), "", "")
        pr = r.get("paced")
        if pr:
            table.add_row(f"paced at {pr['fraction']:g} of that: calls/s",
                          f"{pr['calls_per_s']:.0f} ({pr['offered_calls_per_s']:.0f} offered)",
                          "", "")
            table.add_row("paced: p50 / p99 / p99.9",
                          f"{_f(pr['p50_us'])} / {_f(pr['p99_us'])} / {_f(pr['p999_us'])} µs",
                          "", "")
            table.add_row("paced p99 / p99 alone", _f(pr["p99_ratio"], "{:.1f}x"),
                          f"≤ {GOAL_P99_RATIO:g}x", _met(pr["p99_ratio"] <= GOAL_P99_RATIO))
        table.add_row("service RSS before / peak / after",
                      f"{b['rss_kib'] / 1024:.1f} / {p['rss_kib'] / 1024:.1f} / "
                      f"{f.get('rss_kib', 0) / 1024:.1f} MiB", "", "")
        table.add_row("service fds before / peak / after",
                      f"{b['fds']} / {p['fds']} / {f.get('fds', '-')}", "after = before",
                      _met(r["fds_leaked"] == 0))
        table.add_row("service threads before / peak / after",
                      f"{b['threads']} / {p['threads']} / {f.get('threads', '-')}", "", "")
        out.print(table)
        for problem in r["problems"]:
            out.print(f"[red]{r['transport']}: {problem}[/red]")
        _print_notes(out, r)
    return ok


def _print_sessions(out: Any, r: dict[str, Any]) -> bool:
    from rich.table import Table

    if "skipped" in r:
        out.print(f"sessions: skipped ({r['skipped']})")
        return True
    held = r["service_held"] or {}
    rss_mib = held.get("rss_kib", 0) / 1024
    extra = r["extra_uid_session"]
    table = Table("measure", "value", "goal", "met", title=f"sessions held at once "
                  f"({r['transport']} transport)")
    table.add_row("sessions held", f"{r['held']} of {r['sessions']} from {r['uids']} uids",
                  str(r["sessions"]), _met(r["held"] == r["sessions"]))
    table.add_row("per uid (service's count)", ", ".join(
        f"{u}: {n}" for u, n in sorted(r["per_uid"].items())), "", "")
    table.add_row("seconds to open them all", _f(r["opened_s"]), "", "")
    table.add_row("service RSS while held", f"{rss_mib:.1f} MiB", f"< {GOAL_RSS_MIB:g} MB",
                  _met(rss_mib * 1.048576 < GOAL_RSS_MIB))
    table.add_row("service fds / threads while held",
                  f"{held.get('fds')} / {held.get('threads')}", "", "")
    table.add_row("service fds / threads before, after",
                  f"{r['service_before']['fds']} / {r['service_before']['threads']}, "
                  f"{(r['service_after'] or {}).get('fds')} / "
                  f"{(r['service_after'] or {}).get('threads')}", "same",
                  _met(r["fds_leaked"] == 0))
    hs = extra.get("handshake_s")
    table.add_row("handshake of one more session, a new uid", _f(hs, "{:.3f} s"),
                  f"< {GOAL_EXTRA_HANDSHAKE_S:g} s",
                  _met(hs < GOAL_EXTRA_HANDSHAKE_S if hs is not None else False))
    out.print(table)
    for problem in r["problems"]:
        out.print(f"[red]{problem}[/red]")
    if extra.get("error"):
        out.print(f"[red]extra session: {extra['error']}[/red]")
    return r["held"] == r["sessions"] and not r["problems"] and r["fds_leaked"] == 0


def _print_soak(out: Any, r: dict[str, Any]) -> bool:
    from rich.table import Table

    if "skipped" in r:
        out.print(f"soak: skipped ({r['skipped']})")
        return True
    a = r["accounting"]
    growth = r["rss_growth"]["pooled_mib_per_hour"]
    rec = [x["all_back_s"] for x in r["recovery"] if x["all_back_s"] is not None]
    never = [c for x in r["recovery"] for c in x["never_back"]]
    table = Table("measure", "value", "goal", "met",
                  title=f"soak: {r['seconds'] / 60:.1f} min over {', '.join(r['transports'])}")
    table.add_row("calls (ok / unknown / unconfirmed)",
                  f"{a['calls']} ({a['ok']} / {a['unknown']} / {a['unconfirmed']})", "", "")
    table.add_row("lost / duplicated / mismatched", f"{a['lost']} / {a['duplicated']} / "
                  f"{a['mismatched']}", "0 / 0 / 0",
                  _met(not (a["lost"] or a["duplicated"] or a["mismatched"])))
    table.add_row("false successes / cancelled yet committed",
                  f"{a['false_success']} / {a['cancelled_but_committed']}", "0 / 0",
                  _met(not (a["false_success"] or a["cancelled_but_committed"])))
    table.add_row("clients started / killed", f"{r['clients_started']} / {r['clients_killed']}",
                  "", "")
    mix = r.get("clients_alive_by_transport_at_end") or {}
    table.add_row("  alive at the end, by transport",
                  ", ".join(f"{t} {n}" for t, n in sorted(mix.items())) or "-", "", "")
    table.add_row("service restarts", str(r["restarts"]), "", "")
    table.add_row("kill to READY (max)",
                  _f(max((x["restart_s"] for x in r["recovery"]), default=None), "{:.2f} s"),
                  "", "")
    table.add_row("READY to every client back (max)", _f(max(rec, default=None), "{:.3f} s"),
                  f"≤ {GOAL_RECOVERY_S:g} s",
                  _met(max(rec) <= GOAL_RECOVERY_S and not never) if rec else "-")
    g = r["rss_growth"]
    fitted = [x for x in g["lifetimes"] if x["fitted"]]
    table.add_row(f"RSS growth from {g['warmup_s']:g} s after each READY, pooled over "
                  f"{len(fitted)} of {len(g['lifetimes'])} lifetimes with ≥ "
                  f"{g['min_fit_s']:g} s after it", _f(growth, "{:+.2f} MiB/h"),
                  f"< {GOAL_GROWTH_MIB_H:g} MiB/h",
                  _met(growth < GOAL_GROWTH_MIB_H) if growth is not None else "-")
    table.add_row("  per fitted lifetime: whole / last half",
                  ", ".join(f"{_f(x['mib_per_hour'], '{:+.1f}')} / "
                            f"{_f(x['last_half_mib_per_hour'], '{:+.1f}')} over "
                            f"{x['seconds'] / 60:.1f} min" for x in fitted) or "-", "", "")
    anon = g["anon_mib_per_hour"]
    table.add_row("  private anonymous memory (no shared rings, no file pages)",
                  _f(anon, "{:+.2f} MiB/h"), f"< {GOAL_GROWTH_MIB_H:g} MiB/h",
                  _met(anon < GOAL_GROWTH_MIB_H) if anon is not None else "-")
    table.add_row("  Python heap / C allocator in use / kept free",
                  f"{_f(g['heap_blocks_per_hour'], '{:+.0f}')} blocks/h / "
                  f"{_f(g['malloc_in_use_mib_per_hour'], '{:+.2f}')} / "
                  f"{_f(g['malloc_free_mib_per_hour'], '{:+.2f}')} MiB/h", "", "")
    table.add_row("RSS max", _f((r["rss_kib_max"] or 0) / 1024, "{:.1f} MiB"), "", "")
    table.add_row("fds / threads leaked at the end", f"{r['fds_leaked']} / {r['threads_leaked']}",
                  "0 / 0", _met(r["fds_leaked"] == 0 and r["threads_leaked"] == 0))
    out.print(table)
    for problem in r["problems"]:
        out.print(f"[red]{problem}[/red]")
    _print_notes(out, r)
    return bool(r["clean"]) and r["fds_leaked"] == 0 and r["threads_leaked"] == 0 \
        and not never
