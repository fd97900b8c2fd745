r"""``aether mailslot``: mailslots from the shell (seed 004).

Only the creator of a mailslot can read it, so the reading commands create
it: ``create`` serves until interrupted, printing every message; ``read``
takes a given number of messages and exits (the mailslot goes with it).

    aether mailslot create '\\.\mailslot\demo' &
    aether mailslot write '\\.\mailslot\demo' hello world     # two messages
    aether mailslot write '\\*\mailslot\demo' "to the network" # UDP broadcast
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from aether.primitives.mailslots import (
    FOREVER,
    Mailslot,
    MailslotTimeoutError,
    mailslot_status,
    open_mailslot,
)

from ._mapslot_common import decode_data, describe_bytes, until_signal
from .errors_cli import handle_errors

_JSON_HELP = "Print the result as JSON (one object per line)."


def _create(name: str, max_size: int, timeout: int, accept_remote: bool) -> Mailslot:
    return Mailslot.create(name, max_size, timeout, accept_remote=accept_remote)


def _ready(slot: Mailslot, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"event": "ready", "name": slot.name,
                               **slot.info().as_dict()}))
    else:
        click.echo(f"ready: {slot.name} (max message size {slot.max_message_size or 'any'})")
    sys.stdout.flush()


def _print_message(message: bytes, waiting: int, as_json: bool) -> None:
    if as_json:
        record: dict[str, Any] = {"event": "message", **describe_bytes(message),
                                  "waiting": waiting}
        click.echo(json.dumps(record))
    else:
        click.echo(message.decode("utf-8", "backslashreplace"))
    sys.stdout.flush()


def _serve(slot: Mailslot, count: int | None, as_json: bool) -> int:
    """Read and print messages until ``count`` or a read timeout; returns how many."""
    got = 0
    try:
        while count is None or got < count:
            message = slot.read()
            got += 1
            _print_message(message, slot.info().message_count, as_json)
    except MailslotTimeoutError:
        if got == 0 and count is not None:
            raise
    return got


@click.group(name="mailslot")
def mailslot() -> None:
    r"""Mailslots: one reader, many writers, one message per write (seed 004).

    Names look like \\.\mailslot\[path\]name and ignore case. A writer may
    also name \\*\mailslot\name (UDP broadcast) or \\host\mailslot\name,
    with at most 424 bytes per message.
    """


_timeout_option = click.option(
    "--timeout", type=int, default=None, metavar="MS",
    help="How long each read waits (default: forever).",
)


@mailslot.command("create")
@click.argument("name")
@click.option("--max-size", type=int, default=0, help="Largest message accepted (0: any).")
@_timeout_option
@click.option("--count", type=int, default=None, help="Exit after this many messages.")
@click.option("--accept-remote", is_flag=True,
              help="Also receive messages over UDP (unauthenticated).")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@handle_errors
def create(
    name: str,
    max_size: int,
    timeout: int | None,
    count: int | None,
    accept_remote: bool,
    as_json: bool,
) -> None:
    """Create mailslot NAME and print messages as they arrive, until
    interrupted, --count messages, or a read --timeout."""
    with until_signal(), _create(name, max_size, _ms(timeout), accept_remote) as slot:
        _ready(slot, as_json)
        _serve(slot, count, as_json)


@mailslot.command("read")
@click.argument("name")
@click.option("--count", type=int, default=1, show_default=True, help="Messages to read.")
@_timeout_option
@click.option("--max-size", type=int, default=0, help="Largest message accepted (0: any).")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@handle_errors
def read(name: str, count: int, timeout: int | None, max_size: int, as_json: bool) -> None:
    """Create mailslot NAME, read COUNT messages, print them and close it.

    Fails (exit 5, ERROR_SEM_TIMEOUT) if no message arrives in --timeout.
    """
    with until_signal(), _create(name, max_size, _ms(timeout), False) as slot:
        _ready(slot, as_json)
        _serve(slot, count, as_json)


@mailslot.command("write")
@click.argument("name")
@click.argument("messages", nargs=-1)
@click.option("--hex", "hex_input", is_flag=True, help="Each MESSAGE is hex.")
@click.option("--stdin", "from_stdin", is_flag=True, help="Send each line of stdin as a message.")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@handle_errors
def write(
    name: str, messages: tuple[str, ...], hex_input: bool, from_stdin: bool, as_json: bool
) -> None:
    """Send each MESSAGE (or each stdin line) to mailslot NAME as one message."""
    if from_stdin == bool(messages):
        raise click.UsageError("give MESSAGE arguments or --stdin (one of them)")
    payloads = (
        (line.rstrip(b"\n") for line in sys.stdin.buffer)
        if from_stdin
        else (decode_data(m, hex_input) for m in messages)
    )
    with open_mailslot(name) as writer:
        for payload in payloads:
            written = writer.write(payload)
            if as_json:
                click.echo(json.dumps({"event": "written", "name": name, "size": written}))
            else:
                click.echo(f"wrote {written} bytes")


@mailslot.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@handle_errors
def info(name: str, as_json: bool) -> None:
    """Describe live mailslot NAME as any writer sees it (waiting messages
    are known only to its reader, which prints them with each message)."""
    status = mailslot_status(name)
    if as_json:
        click.echo(json.dumps(status.as_dict()))
        return
    remote = f", remote on UDP {status.udp_port}" if status.accepts_remote else ""
    click.echo(
        f"{status.name}: max message size {status.max_message_size or 'any'},"
        f" reader pid {status.creator_pid}{remote}"
    )


def _ms(timeout: int | None) -> int:
    return FOREVER if timeout is None else timeout
