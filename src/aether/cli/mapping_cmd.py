r"""``aether mapping``: named file mappings from the shell (seed 004).

A mapping's name lives while some process holds a handle, so ``create``
and ``open`` keep theirs until interrupted (or ``--hold-for`` seconds);
``read``, ``write`` and ``info`` open the name, act, and close again.

    aether mapping create 'Local\demo' --size 64K &
    aether mapping write 'Local\demo' hello --offset 16
    aether mapping read 'Local\demo' --offset 16 --length 5 --format text
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from aether.primitives.mapping import (
    Access,
    FileMapping,
    MappingInfo,
    Protect,
    query,
)

from ._mapslot_common import SIZE, decode_data, describe_bytes, until_signal, wait_forever
from .errors_cli import handle_errors

_JSON_HELP = "Print the result as JSON."
_PROTECT = {
    "readonly": Protect.READONLY,
    "readwrite": Protect.READWRITE,
    "writecopy": Protect.WRITECOPY,
}
_ACCESS = {"read": Access.READ, "write": Access.WRITE, "all": Access.ALL}


def _emit(info: MappingInfo, as_json: bool, event: str) -> None:
    if as_json:
        click.echo(json.dumps({"event": event, **info.as_dict()}))
        return
    where = f", file {info.path}" if info.path else ""
    origin = "created" if info.created else "opened existing"
    click.echo(
        f"{event}: {origin} {info.name!r}: {info.size} bytes, PAGE_{info.protect.name},"
        f" {info.backing}{where}, creator pid {info.creator_pid}"
    )


def _hold(mapping: FileMapping, hold_for: float | None, as_json: bool) -> None:
    if not as_json:
        click.echo("holding the mapping open; Ctrl-C to close it", err=True)
    sys.stdout.flush()
    with until_signal():
        wait_forever(hold_for)
    mapping.close()
    if as_json:
        click.echo(json.dumps({"event": "closed", "name": mapping.name}))
    else:
        click.echo("closed")


@click.group(name="mapping")
def mapping() -> None:
    r"""Named file mappings: shared memory and mapped files (seed 004).

    Names are case-sensitive and may start with Local\ (this user, the
    default) or Global\ (machine-wide; creating needs root). A name lives
    while any process holds it open.
    """


@mapping.command("create")
@click.argument("name")
@click.option("--size", type=SIZE, default=0, help="Bytes (64K, 1M ...); 0 with --file: its size.")
@click.option("--file", "file", type=click.Path(dir_okay=False, path_type=Path),
              help="Map this file instead of memory.")
@click.option("--protect", type=click.Choice(sorted(_PROTECT)), default="readwrite",
              show_default=True, help="The object's page protection.")
@click.option("--open-existing", is_flag=True,
              help="If NAME exists, hold it instead of failing (CreateFileMapping's own way).")
@click.option("--hold-for", type=float, default=None, metavar="SECONDS",
              help="Close after this long (default: until interrupted).")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@handle_errors
def create(
    name: str,
    size: int,
    file: Path | None,
    protect: str,
    open_existing: bool,
    hold_for: float | None,
    as_json: bool,
) -> None:
    """Create mapping NAME and hold it open until interrupted."""
    factory = FileMapping.open_or_create if open_existing else FileMapping.create
    m = factory(name, size, _PROTECT[protect], file)
    _emit(m.info(), as_json, "ready")
    _hold(m, hold_for, as_json)


@mapping.command("open")
@click.argument("name")
@click.option("--access", type=click.Choice(sorted(_ACCESS)), default="read", show_default=True)
@click.option("--hold-for", type=float, default=None, metavar="SECONDS",
              help="Close after this long (default: until interrupted).")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@handle_errors
def open_(name: str, access: str, hold_for: float | None, as_json: bool) -> None:
    """Open existing mapping NAME and hold it (keeps the name alive)."""
    m = FileMapping.open(name, _ACCESS[access])
    _emit(m.info(), as_json, "ready")
    _hold(m, hold_for, as_json)


@mapping.command("read")
@click.argument("name")
@click.option("--offset", type=SIZE, default=0, help="Where to start (any byte offset).")
@click.option("--length", type=SIZE, default=256, show_default=True,
              help="Bytes to read (0: to the end).")
@click.option("--format", "fmt", type=click.Choice(["hex", "text", "raw"]), default="hex",
              show_default=True, help="hex dump, UTF-8 text, or raw bytes to stdout.")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@handle_errors
def read(name: str, offset: int, length: int, fmt: str, as_json: bool) -> None:
    """Print bytes of mapping NAME."""
    with FileMapping.open(name, Access.READ) as m:
        data = _read_range(m, offset, length)
    if as_json:
        click.echo(json.dumps({"name": name, "offset": offset, **describe_bytes(data)}))
    elif fmt == "raw":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    elif fmt == "text":
        click.echo(data.decode("utf-8", "backslashreplace"))
    else:
        for row in range(0, len(data), 16):
            chunk = data[row:row + 16]
            text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
            click.echo(f"{offset + row:08x}  {chunk.hex(' '):<47}  {text}")


@mapping.command("write")
@click.argument("name")
@click.argument("data", required=False)
@click.option("--offset", type=SIZE, default=0, help="Where to write (any byte offset).")
@click.option("--hex", "hex_input", is_flag=True, help="DATA is hex (e.g. 48690a).")
@click.option("--stdin", "from_stdin", is_flag=True, help="Write the bytes read from stdin.")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@handle_errors
def write(
    name: str, data: str | None, offset: int, hex_input: bool, from_stdin: bool, as_json: bool
) -> None:
    """Write DATA (UTF-8 text, --hex, or --stdin) into mapping NAME."""
    if from_stdin == (data is not None):
        raise click.UsageError("give DATA or --stdin (one of them)")
    payload = sys.stdin.buffer.read() if from_stdin else decode_data(data or "", hex_input)
    with FileMapping.open(name, Access.WRITE) as m:
        _write_range(m, offset, payload)
    if as_json:
        click.echo(json.dumps({"name": name, "offset": offset, "written": len(payload)}))
    else:
        click.echo(f"wrote {len(payload)} bytes at offset {offset}")


@mapping.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@handle_errors
def info(name: str, as_json: bool) -> None:
    """Describe live mapping NAME (fails if nobody holds it)."""
    _emit(query(name), as_json, "info")


def _window(m: FileMapping, offset: int, length: int) -> tuple[int, int, int]:
    """The 64 KiB-aligned view covering ``[offset, offset+length)``."""
    if offset >= m.size:
        raise click.BadParameter(f"offset {offset} is past the end ({m.size} bytes)")
    length = m.size - offset if length == 0 else min(length, m.size - offset)
    base = offset - offset % 0x10000
    return base, offset - base, length


def _read_range(m: FileMapping, offset: int, length: int) -> bytes:
    base, skip, length = _window(m, offset, length)
    with m.map_view(Access.READ, base, skip + length) as view:
        return bytes(view[skip:skip + length])


def _write_range(m: FileMapping, offset: int, payload: bytes) -> None:
    if not payload:
        return
    base, skip, length = _window(m, offset, len(payload))
    if length < len(payload):
        raise click.BadParameter(f"{len(payload)} bytes at {offset} pass the end ({m.size})")
    with m.map_view(Access.WRITE, base, skip + length) as view:
        view[skip:skip + length] = payload
        view.flush()
