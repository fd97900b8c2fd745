"""``aether bench``: benchmarks as programs, figures as ratios to a peer
measured in the same run on the same machine."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import click


def _environment() -> dict[str, Any]:
    import os

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }


def _write_json(path: str | None, rows: list[dict[str, Any]], suite: str) -> None:
    if path:
        Path(path).write_text(json.dumps(
            {"suite": suite, "environment": _environment(), "results": rows}, indent=2))
        click.echo(f"figures written to {path}")


@click.group(invoke_without_command=True)
@click.option("--quick", is_flag=True, help="Fewer iterations (well under a minute).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write figures here.")
@click.pass_context
def bench(ctx: click.Context, quick: bool, json_path: str | None) -> None:
    """Measure Aether against peers and floors (default: the echo benchmark)."""
    ctx.ensure_object(dict)
    ctx.obj.update(quick=quick, json_path=json_path)
    if ctx.invoked_subcommand is None:
        ctx.invoke(echo)


@bench.command()
@click.option("--quick", is_flag=True, help="Fewer iterations.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write figures here.")
@click.pass_context
def echo(ctx: click.Context, quick: bool = False, json_path: str | None = None) -> None:
    """Echo round trips: the memory transport beside raw AF_UNIX sockets."""
    from rich.table import Table

    from aether.bench import echo as echo_bench

    from .render import console

    quick = quick or ctx.obj.get("quick", False)
    json_path = json_path or ctx.obj.get("json_path")
    click.echo("measuring (the machine's other work adds noise; figures are ratios to peers "
               "measured in this same run)...", err=True)
    rows = echo_bench.run(quick=quick)
    table = Table("mechanism", "payload", "p50 µs", "p99 µs", "mean µs", "calls/s", "GB/s each way",
                  "p50 vs raw", title="echo round trip, unpinned, 1 client")
    by_size: dict[int, dict[str, dict[str, Any]]] = {}
    for r in rows:
        by_size.setdefault(r["payload_bytes"], {})[r["mechanism"]] = r
    for size, mechs in by_size.items():
        peer = mechs.get("raw.seqpacket") or mechs.get("raw.stream")
        for name, r in mechs.items():
            ratio = r["p50_us"] / peer["p50_us"] if peer else float("nan")
            r["ratio_p50_vs_" + (peer["mechanism"] if peer else "none")] = ratio
            table.add_row(name, _size(size), f"{r['p50_us']:.1f}", f"{r['p99_us']:.1f}",
                          f"{r['mean_us']:.1f}", f"{r['calls_per_s']:.0f}",
                          f"{r['gbps']:.2f}" if "gbps" in r else "",
                          f"{ratio:.2f}x {peer['mechanism']}" if peer and name != peer[
                              "mechanism"] else "")
    console().print(table)
    _write_json(json_path, rows, "echo")


@bench.command()
@click.option("--quick", is_flag=True, help="Fewer iterations.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write figures here.")
@click.pass_context
def primitives(ctx: click.Context, quick: bool, json_path: str | None) -> None:
    """Seed-004 primitives against their floors (dict, raw sockets, os.pipe, memcpy)."""
    import importlib

    from rich.table import Table

    from .render import console

    quick = quick or ctx.obj.get("quick", False)
    json_path = json_path or ctx.obj.get("json_path")
    rows: list[dict[str, Any]] = []
    for module in ("aether.bench.prim_atoms_pipes", "aether.bench.prim_mapping_mailslot"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            rows.append({"name": module, "skipped": str(exc)})
            continue
        rows.extend(mod.run(quick))
    table = Table("measure", "value", "unit", "floor", "ratio", title="seed-004 primitives")
    for r in rows:
        if "skipped" in r:
            table.add_row(r["name"], "skipped", r["skipped"], "", "")
            continue
        table.add_row(r["name"], f"{r['value']:.4g}", r.get("unit", ""),
                      f"{r['floor']:.4g}" if isinstance(r.get("floor"), float | int) else "",
                      f"{r['ratio']:.2f}" if isinstance(r.get("ratio"), float | int) else "")
    console().print(table)
    _write_json(json_path, rows, "primitives")


def _size(n: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n // scale} {unit}"
    return f"{n} B"


from aether.bench.load_cmd import load as _load  # noqa: E402  (aether bench load)

bench.add_command(_load)
