"""``aether atom``: the calling user's global atom table from the shell.

Atoms added here outlive the command, as global atoms outlive the process
that added them on Windows; delete them with ``aether atom delete``.
"""

from __future__ import annotations

import json
from typing import Any

import click

from aether.primitives.atoms import MAXINTATOM, AtomInfo, GlobalAtomTable

from .errors_cli import handle_errors

_JSON_HELP = "Print the result as JSON."


class AtomValue(click.ParamType):  # type: ignore[type-arg]  # generic only since click 8.2
    """An atom number: decimal (49152), hex (0xC000)."""

    name = "ATOM"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            number = int(str(value), 0)
        except ValueError:
            self.fail(f"{value!r} is not a number (use 49152 or 0xC000)", param, ctx)
        if not 0 < number <= 0xFFFF:
            self.fail(f"{value} is not an atom (1-0xFFFF)", param, ctx)
        return number


ATOM = AtomValue()


def _record(info: AtomInfo) -> dict[str, Any]:
    return {
        "atom": info.atom,
        "hex": f"0x{info.atom:04X}",
        "name": info.name,
        "refcount": info.refcount,
        "integer": info.atom < MAXINTATOM,
    }


def _emit(info: AtomInfo, as_json: bool, note: str = "") -> None:
    if as_json:
        click.echo(json.dumps(_record(info)))
        return
    kind = "integer atom" if info.atom < MAXINTATOM else f"refcount {info.refcount}"
    line = f"0x{info.atom:04X} ({info.atom})  {info.name!r}  [{kind}]"
    click.echo(f"{line}  {note}" if note else line)


@click.group(name="atom")
def atom() -> None:
    """The calling user's global atom table (seed 004).

    String atoms are 0xC000-0xFFFF and compared without case; "#1234" and
    numbers 1-49151 are integer atoms that need no table entry.
    """


@atom.command("add")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@handle_errors
def add(name: str, as_json: bool) -> None:
    """Add NAME (or one more reference to it) and print its atom."""
    table = GlobalAtomTable.default()
    value = table.add(name)
    _emit(table.info(value), as_json)


@atom.command("find")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@handle_errors
def find(name: str, as_json: bool) -> None:
    """Print the atom of NAME (case-insensitive); fails if there is none."""
    table = GlobalAtomTable.default()
    _emit(table.info(table.find(name)), as_json)


@atom.command("delete")
@click.argument("value", metavar="ATOM", type=ATOM)
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@handle_errors
def delete(value: int, as_json: bool) -> None:
    """Drop one reference to ATOM; the string goes when none is left."""
    table = GlobalAtomTable.default()
    before = table.info(value)
    left = table.delete(value)
    after = AtomInfo(before.atom, before.name, left)
    note = "(removed)" if left == 0 else ""
    if as_json:
        click.echo(json.dumps({**_record(after), "removed": left == 0}))
    else:
        _emit(after, False, note)


@atom.command("name")
@click.argument("value", metavar="ATOM", type=ATOM)
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@handle_errors
def name(value: int, as_json: bool) -> None:
    """Print the string of ATOM ("#n" for an integer atom)."""
    table = GlobalAtomTable.default()
    info = table.info(value)
    if as_json:
        click.echo(json.dumps(_record(info)))
    else:
        click.echo(info.name)


@atom.command("list")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@handle_errors
def list_atoms(as_json: bool) -> None:
    """List every string atom with its reference count."""
    table = GlobalAtomTable.default()
    infos = list(table)
    if as_json:
        click.echo(json.dumps([_record(i) for i in infos]))
        return
    if not infos:
        click.echo("(no atoms)")
        return
    click.echo(f"{'ATOM':<8}{'REFS':>6}  NAME")
    for info in infos:
        click.echo(f"0x{info.atom:04X}  {info.refcount:>6}  {info.name}")
