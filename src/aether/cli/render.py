"""Rich renderings shared by the CLI commands."""

from __future__ import annotations

import json
import os
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from aether.schema import builtins as b

_console: Console | None = None


def console() -> Console:
    """The stdout console; 120 columns when not a terminal (logs, CI, pipes)."""
    global _console
    if _console is None:
        _console = Console()
        if not _console.is_terminal and "COLUMNS" not in os.environ:
            _console = Console(width=120)
    return _console


def err_console() -> Console:
    return Console(stderr=True)


def status_table(st: b.ServiceStatus) -> Table:
    table = Table(title=f"{st.service} {st.version}", show_header=False)
    table.add_row("pid", str(st.pid))
    table.add_row("uptime", f"{st.uptime_s:.1f} s")
    table.add_row("sessions", str(st.sessions))
    table.add_row("operations served", str(st.operations_served))
    for s in st.session_list:
        table.add_row(f"session {s.session_id}",
                      f"pid {s.pid} uid {s.uid} {s.transport}, {s.operations} ops"
                      + (f", running {s.running}" if s.running else ""))
    return table


def to_jsonable(value: Any) -> Any:
    """msgspec values to plain JSON types (bytes as base64, as msgspec.json does)."""
    return json.loads(msgspec.json.encode(value))


def result_renderable(value: Any) -> Any:
    """A table for lists of records, a key/value table for a record, else pretty JSON."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.hex()
    plain = to_jsonable(value)
    if isinstance(plain, dict):
        table = Table(show_header=False)
        for key, item in plain.items():
            if isinstance(item, list) and item and isinstance(item[0], dict):
                table.add_row(key, _records_table(item))
            else:
                table.add_row(key, json.dumps(item) if not isinstance(item, str) else item)
        return table
    if isinstance(plain, list) and plain and isinstance(plain[0], dict):
        return _records_table(plain)
    return json.dumps(plain, indent=2)


def _records_table(records: list[dict[str, Any]], limit: int = 50) -> Table:
    columns = list(records[0])
    table = Table(*columns)
    for rec in records[:limit]:
        table.add_row(*[str(rec.get(c, "")) for c in columns])
    if len(records) > limit:
        table.caption = f"{len(records) - limit} more rows not shown (use --json)"
    return table
