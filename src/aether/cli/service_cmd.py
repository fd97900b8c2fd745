"""``aether service``: run a service in the foreground, or ask one its status."""

from __future__ import annotations

import json
import sys

import click

from .errors_cli import handle_errors


@click.group()
def service() -> None:
    """Run, install or inspect an Aether service."""


@service.command("run")
@click.argument("target")
@click.option("--socket", "socket_path", type=click.Path(dir_okay=False),
              help="Control socket path (default: /run/aether/NAME.ctl as root, else the "
                   "user's runtime directory).")
@click.option("--mode", type=str, default=None,
              help="Socket permission bits in octal (default 0666 system, 0600 user).")
@click.option("--no-memory-transport", is_flag=True,
              help="Offer only the socket transport (no cross-process memory access).")
@click.option("--spin-us", type=click.IntRange(0, 100_000), default=None,
              help="Microseconds a lone session polls before sleeping (0: never spin).")
@handle_errors
def run(target: str, socket_path: str | None, mode: str | None,
        no_memory_transport: bool, spin_us: int | None) -> None:
    """Run TARGET in the foreground until SIGTERM or SIGINT.

    TARGET is a shipped service name (``guard``) or ``package.module:attribute``
    naming an ``aether.Service``.
    """
    from dataclasses import replace

    from aether.service import load_service
    from aether.service.logsetup import configure_service_logging

    svc = load_service(target)
    configure_service_logging(svc.name)
    if mode is not None:
        try:
            svc.limits = replace(svc.limits, socket_mode=int(mode, 8))
        except ValueError:
            raise click.BadParameter(f"{mode!r} is not an octal mode", param_hint="--mode") \
                from None
    if no_memory_transport:
        svc.memory_transport_enabled = False
    if spin_us is not None:
        svc.limits = replace(svc.limits, spin=spin_us / 1e6)
    svc.serve(socket_path)
    sys.exit(0)


@service.command("status")
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def status(target: str, as_json: bool) -> None:
    """Show a running service's status (version, uptime, sessions)."""
    import msgspec

    from aether.client import Client

    from .render import console, status_table

    with Client(target, transport="auto", timeout=3.0) as client:
        st = client.status()
    if as_json:
        click.echo(json.dumps(msgspec.to_builtins(st), indent=2))
    else:
        console().print(status_table(st))
