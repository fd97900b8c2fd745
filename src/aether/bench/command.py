"""The default ``aether bench`` command: every mechanism in one run."""

from __future__ import annotations

import signal
import sys
import time

import click


@click.command("run")
@click.option("--quick", is_flag=True, help="Fewer iterations, one run each (under a minute).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Write every figure, the machine and the goal verdicts here.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Draw latency distributions and throughput bars (PNG, matplotlib).")
@click.option("--only", multiple=True, metavar="ID",
              help="Measure only these mechanisms (repeatable), e.g. --only floor.spin.")
@click.pass_context
def run(ctx: click.Context, quick: bool = False, json_path: str | None = None,
        plot_path: str | None = None, only: tuple[str, ...] = ()) -> None:
    """Aether's transports against every peer and floor, in one run."""
    from rich.console import Console

    from .mechanisms import MECHANISM_IDS
    from .render import print_report
    from .suite import Config, Runner

    obj = ctx.obj or {}
    quick = quick or obj.get("quick", False)
    json_path = json_path or obj.get("json_path")
    plot_path = plot_path or obj.get("plot_path")
    only = only or tuple(obj.get("only", ()))
    unknown = sorted(set(only) - set(MECHANISM_IDS))
    if unknown:
        raise click.BadParameter(f"unknown mechanism(s) {', '.join(unknown)}; known: "
                                 + ", ".join(MECHANISM_IDS), param_hint="--only")
    if plot_path:
        try:
            import matplotlib  # noqa: F401
        except ModuleNotFoundError:
            raise click.ClickException("--plot needs matplotlib (pip install -e '.[bench]')") \
                from None
    config = Config.quick() if quick else Config()
    config.only = frozenset(only) if only else None
    t0 = time.monotonic()

    def progress(text: str) -> None:
        click.echo(f"[{time.monotonic() - t0:6.1f} s] {text}", err=True)

    click.echo("measuring; every server is its own process, every figure is compared with "
               "floors and peers measured in this same run", err=True)
    runner = Runner(config, progress=progress,
                    checkpoint=(lambda r: r.write_json(json_path)) if json_path else None)
    # SIGTERM unwinds like Ctrl-C, so every server and the private dbus-daemon
    # are stopped by the context managers that started them.
    signal.signal(signal.SIGTERM, _interrupt)
    report = runner.run()
    console = Console(width=None if sys.stdout.isatty() else 160)
    print_report(report, runner.mechanisms, console, list(config.latency_sizes),
                 list(config.pinned_sizes), list(config.bulk_sizes), list(config.clients))
    if json_path:
        report.write_json(json_path)
        click.echo(f"figures written to {json_path}", err=True)
    if plot_path:
        from .plot import write_plot

        write_plot(report, plot_path)
        click.echo(f"plot written to {plot_path}", err=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
