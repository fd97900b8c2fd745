"""``aether list``, ``aether describe`` and ``aether call``."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click

from .errors_cli import handle_errors
from .main import EXIT_INTERRUPTED, EXIT_USAGE

TRANSPORTS = click.Choice(["auto", "memory", "mapping", "socket"])
_JSON_OUT = "\0json-output"  # the value of a bare --json


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def list_services(as_json: bool) -> None:
    """List the services whose control sockets are visible, with their status."""
    from rich.table import Table

    from aether.client import Client, visible_services
    from aether.errors import AetherError

    from .render import console

    rows: list[dict[str, Any]] = []
    for addr in visible_services():
        row: dict[str, Any] = {"name": addr.name, "scope": addr.scope, "socket": str(addr.path)}
        try:
            with Client(addr.path, transport="socket", timeout=2.0) as client:
                st = client.status()
            row.update(running=True, version=st.version, pid=st.pid,
                       uptime_s=st.uptime_s, sessions=st.sessions)
        except AetherError as exc:
            row.update(running=False, error=str(exc))
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no services found")
        return
    table = Table("name", "scope", "state", "version", "pid", "uptime", "sessions", "socket")
    for r in rows:
        table.add_row(r["name"], r["scope"], "running" if r["running"] else "not answering",
                      r.get("version", ""), str(r.get("pid", "")),
                      f"{r['uptime_s']:.0f} s" if "uptime_s" in r else "",
                      str(r.get("sessions", "")), r["socket"])
    console().print(table)


@click.command()
@click.argument("service")
@click.option("--json", "as_json", is_flag=True, help="Print the full description as JSON.")
@click.option("--transport", type=TRANSPORTS, default="auto", show_default=True)
@handle_errors
def describe(service: str, as_json: bool, transport: str) -> None:
    """Show SERVICE's operations with their parameters."""
    from rich.table import Table

    from aether.client import Client

    from .render import console

    with Client(service, transport=transport) as client:
        desc = client.describe()
    if as_json:
        click.echo(json.dumps({
            "service": desc.service, "version": desc.version,
            "fingerprint": f"{desc.fingerprint:016x}",
            "operations": [
                {"code": op.code, "name": op.name, "summary": op.summary,
                 "privileged": op.privileged, "params": json.loads(op.params_schema),
                 "result": json.loads(op.result_schema)}
                for op in desc.operations
            ],
        }, indent=2))
        return
    table = Table("code", "operation", "parameters", "privileged", "summary",
                  title=f"{desc.service} {desc.version} (schema {desc.fingerprint:016x})")
    for op in desc.operations:
        table.add_row(f"0x{op.code:04x}", op.name, _param_summary(op.params_schema),
                      "yes" if op.privileged else "", op.summary)
    console().print(table)


def _param_summary(schema_json: str) -> str:
    schema = json.loads(schema_json)
    ref = schema.get("$ref", "")
    body = schema.get("$defs", {}).get(ref.rsplit("/", 1)[-1], schema)
    required = set(body.get("required", []))
    parts = []
    for name, prop in body.get("properties", {}).items():
        kind = prop.get("type") or ("enum" if "enum" in prop else "object")
        parts.append(f"{name}: {kind}" + ("" if name in required else "?"))
    return ", ".join(parts)


def parse_assignments(items: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` pairs; a value that parses as JSON is taken as JSON."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.UsageError(f"expected key=value, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


@click.command()
@click.argument("service")
@click.argument("operation")
@click.argument("assignments", nargs=-1)
@click.option("--json", "json_value", is_flag=False, flag_value=_JSON_OUT, default=None,
              metavar="[PARAMS]",
              help="Print the result as JSON; with a value, also take the parameters from "
                   "that JSON object.")
@click.option("--params", "params_json", metavar="JSON", help="Parameters as a JSON object.")
@click.option("--transport", type=TRANSPORTS, default="auto", show_default=True)
@click.option("--timeout", type=float, default=None, help="Give up waiting after SECONDS.")
@handle_errors
def call(service: str, operation: str, assignments: tuple[str, ...], json_value: str | None,
         params_json: str | None, transport: str, timeout: float | None) -> None:
    """Call OPERATION of SERVICE with key=value parameters.

    A value that parses as JSON is taken as JSON (numbers, lists, true/false).

    \b
    Examples:
      aether call guard aether.echo data=hi
      aether call guard guard.hash_tree root=/etc --json
      aether call guard guard.hash_tree --json '{"root": "/etc"}'
    """
    from aether.client import Client
    from aether.client.operation import Operation

    from .render import console, err_console, result_renderable, to_jsonable

    as_json = json_value is not None
    if json_value not in (None, _JSON_OUT):
        if params_json:
            raise click.UsageError("give the parameters with --json PARAMS or --params, not both")
        params_json = json_value
    params: dict[str, Any] = {}
    if params_json:
        try:
            loaded = json.loads(params_json)
        except json.JSONDecodeError as exc:
            raise click.UsageError(f"the parameters are not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise click.UsageError("the parameters must be a JSON object")
        params.update(loaded)
    params.update(parse_assignments(assignments))
    if operation == "aether.echo" and isinstance(params.get("data"), str):
        params["data"] = params["data"].encode()

    calling = False  # the request may have gone out: Ctrl-C then cancels it
    try:
        with Client(service, transport=transport) as client:
            if operation not in client.operations():
                click.echo(f"aether: error: {service} has no operation {operation!r} "
                           f"(see 'aether describe {service}')", err=True)
                sys.exit(EXIT_USAGE)
            show_bar = sys.stderr.isatty() and not as_json
            calling = True
            if show_bar:
                from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

                progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                    TextColumn("{task.percentage:>5.1f}%"), TimeElapsedColumn(),
                                    TextColumn("{task.fields[msg]}"), console=err_console(),
                                    transient=True)
                task = progress.add_task(operation, total=1000, msg="")

                def on_progress(op: Operation) -> None:
                    progress.update(task, completed=op.permille,
                                    msg=op.progress_info.message[-40:])

                with progress:
                    result = client.call_by_name(operation, params, timeout=timeout,
                                                 on_progress=on_progress)
            else:
                result = client.call_by_name(operation, params, timeout=timeout)
    except KeyboardInterrupt:
        _interrupted(operation if calling else None)
    if as_json:
        click.echo(json.dumps(to_jsonable(result), indent=2))
    else:
        console().print(result_renderable(result))


def _interrupted(operation: str | None) -> NoReturn:
    """Ctrl-C. During a call the client has already ended the session (a
    reply may have been half taken: see ``Client._abandon``), and the
    service cancels the operation as its session ends."""
    if operation is None:
        click.echo("aether: interrupted", err=True)
    else:
        click.echo(f"aether: interrupted; the session ended and the service cancels "
                   f"{operation}", err=True)
    sys.exit(EXIT_INTERRUPTED)
