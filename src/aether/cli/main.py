"""The ``aether`` command.

Subcommands live in their own modules and are imported only when used, so
``aether --help`` and the GUI start quickly.

Exit codes (also in ``aether --help``):
  0 success; 1 the operation failed (its status is printed);
  2 usage error; 3 could not connect or handshake failed;
  4 unauthorized; 5 other Aether error (OS, primitive);
  130 interrupted (Ctrl-C) before the operation ended.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

EXIT_OK = 0
EXIT_OPERATION_FAILED = 1
EXIT_USAGE = 2
EXIT_CONNECT = 3
EXIT_UNAUTHORIZED = 4
EXIT_OTHER = 5
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it

# name -> "module:attribute" of a click command or group
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("aether.cli.demo_cmd:demo", "Run the seed's system end to end and show each step."),
    "service": ("aether.cli.service_cmd:service", "Run, install or inspect a service."),
    "list": ("aether.cli.call_cmd:list_services", "List the services whose sockets are visible."),
    "describe": ("aether.cli.call_cmd:describe", "Show a service's operations and schemas."),
    "call": ("aether.cli.call_cmd:call", "Call an operation of a service."),
    "bench": ("aether.cli.bench_cmd:bench", "Measure transports against peers and floors."),
    "atom": ("aether.cli.atom_cmd:atom", "Global atom table (seed 004)."),
    "mapping": ("aether.cli.mapping_cmd:mapping", "Named file mappings (seed 004)."),
    "pipe": ("aether.cli.pipe_cmd:pipe", "Anonymous pipe demonstration (seed 004)."),
    "mailslot": ("aether.cli.mailslot_cmd:mailslot", "Mailslots (seed 004)."),
    "gui": ("aether.cli.gui_cmd:gui", "Open the Qt control panel."),
}

EPILOG = """\b
Exit codes:
  0  success
  1  the operation ran and failed (status printed)
  2  usage error
  3  connection or handshake error
  4  not authorized
  5  other error (OS, primitives)
  130  interrupted (Ctrl-C) before the operation ended
"""


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = SUBCOMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, _, attr = entry[0].partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return _unavailable(cmd_name, entry[1])
            raise
        command: click.Command = getattr(module, attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SUBCOMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _unavailable(name: str, help_text: str) -> click.Command:
    @click.command(name=name, help=help_text + " (not available in this build)")
    def _cmd() -> None:
        raise click.ClickException(f"'aether {name}' is not available in this build")

    return _cmd


@click.group(cls=LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="aether-ipc", prog_name="aether")
@click.option("-v", "--verbose", count=True, help="More log output (repeat for debug).")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Aether: control a privileged background service over local IPC."""
    import logging

    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    ctx.ensure_object(dict)


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``aether`` console script."""
    return cli.main(args=argv, prog_name="aether", standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
