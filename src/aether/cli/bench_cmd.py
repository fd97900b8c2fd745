"""``aether bench``: a thin registry. Each suite is a click command in its own
module, imported only when used; add one with one line in SUITES.

With no subcommand, ``aether bench [--quick] [--json F] [--plot F]`` runs the
default suite: Aether against every peer and floor in one run."""

from __future__ import annotations

import importlib
import signal

import click

DEFAULT = "run"
# name -> "module:attribute" of a click command
SUITES: dict[str, str] = {
    "run": "aether.bench.command:run",
    "primitives": "aether.bench.primitives_cli:primitives",
    "guard": "aether.bench.guard:command",
    "load": "aether.bench.load_cmd:load",
}


class _Suites(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUITES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SUITES.get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            return _unavailable(cmd_name)
        command: click.Command = getattr(module, attr)
        return command


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _unavailable(name: str) -> click.Command:
    @click.command(name=name, help="(not available in this build)")
    def _cmd() -> None:
        raise click.ClickException(f"'aether bench {name}' is not available in this build")

    return _cmd


@click.group(cls=_Suites, invoke_without_command=True)
@click.option("--quick", is_flag=True, help="Fewer iterations (the default suite: under 60 s).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write figures here.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Default suite: draw latency distributions and throughput bars (PNG).")
@click.option("--only", multiple=True, metavar="ID", help="Default suite: only these mechanisms.")
@click.pass_context
def bench(ctx: click.Context, quick: bool, json_path: str | None, plot_path: str | None,
          only: tuple[str, ...]) -> None:
    """Measure Aether against peers and floors in one run (default suite), or run a
    named suite."""
    ctx.ensure_object(dict)
    ctx.obj.update(quick=quick, json_path=json_path, plot_path=plot_path, only=only)
    # Every suite starts servers and clients: SIGTERM unwinds like Ctrl-C, so
    # the context managers that started them stop them (none is orphaned).
    signal.signal(signal.SIGTERM, _interrupt)
    if ctx.invoked_subcommand is None:
        command = _Suites().get_command(ctx, DEFAULT)
        assert command is not None
        ctx.invoke(command)
