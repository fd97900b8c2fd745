"""``aether gui``: the Qt control panel (needs the ``gui`` extra)."""

from __future__ import annotations

import sys

import click

from .main import EXIT_OTHER


@click.command()
@click.argument("service", required=False)
@click.option("--transport", type=click.Choice(["auto", "memory", "mapping", "socket"]),
              default="auto", show_default=True, help="Transport for the panel's sessions.")
@click.option("--theme", type=click.Choice(["auto", "light", "dark"]), default="auto",
              show_default=True, help="Palette (auto follows the desktop).")
@click.option("--screenshot", "screenshot_dir", type=click.Path(file_okay=False),
              help="Save PNGs of the main views into DIR and exit (needs SERVICE).")
@click.option("--startup-probe", is_flag=True,
              help="Print how long the window took to be usable, then exit.")
def gui(service: str | None, transport: str, theme: str, screenshot_dir: str | None,
        startup_probe: bool) -> None:
    """Open the control panel, connected to SERVICE (a name or socket path) if given."""
    try:
        import PySide6.QtWidgets  # noqa: F401
    except ImportError as exc:
        click.echo(f"aether: error: the GUI needs PySide6 (pip install 'aether-ipc[gui]'): "
                   f"{exc}", err=True)
        sys.exit(EXIT_OTHER)
    from aether.gui.app import main

    sys.exit(main(service, transport=transport, theme=theme, startup_probe=startup_probe,
                  screenshot_dir=screenshot_dir))
