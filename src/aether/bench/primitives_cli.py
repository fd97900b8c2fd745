"""``aether bench primitives``: the seed-004 primitives against their floors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


@click.command("primitives")
@click.option("--quick", is_flag=True, help="Fewer iterations.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write figures here.")
@click.pass_context
def primitives(ctx: click.Context, quick: bool, json_path: str | None) -> None:
    """Seed-004 primitives against their floors (dict, raw sockets, os.pipe, memcpy)."""
    import importlib

    from rich.console import Console
    from rich.table import Table

    from .suite import machine_info

    obj = ctx.obj or {}
    quick = quick or obj.get("quick", False)
    json_path = json_path or obj.get("json_path")
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
    Console().print(table)
    if json_path:
        Path(json_path).write_text(json.dumps(
            {"suite": "primitives", "machine": machine_info(), "results": rows}, indent=2))
        click.echo(f"figures written to {json_path}")
