"""``aether service``: run a service in the foreground, or ask one its status."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

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
@click.option("--all-cpus", is_flag=True,
              help="Let the kernel spread the service's threads over every CPU "
                   "(default: keep them on one CPU, moved when it is crowded).")
@handle_errors
def run(target: str, socket_path: str | None, mode: str | None,
        no_memory_transport: bool, spin_us: int | None, all_cpus: bool) -> None:
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
    if all_cpus:
        svc.limits = replace(svc.limits, one_cpu=False)
    svc.serve(socket_path)
    sys.exit(0)


@service.command("status")
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--user", is_flag=True, help="Ask systemd's user manager about the unit.")
@handle_errors
def status(target: str, as_json: bool, user: bool) -> None:
    """Show a running service's status (version, uptime, sessions), with
    systemd's view of its unit when systemd is running."""
    import msgspec

    from aether.client import Client
    from aether.errors import AetherError
    from aether.service import systemd

    from .render import console, status_table

    unit = systemd.systemd_status(target, user=user) if "/" not in target else None
    try:
        with Client(target, transport="auto", timeout=3.0) as client:
            st = client.status()
            own = _service_own_status(client, st.service)
    except AetherError as exc:
        if unit is None:
            raise
        st = None
        own = None
        unreachable = str(exc)
    if as_json:
        click.echo(json.dumps({"service": msgspec.to_builtins(st) if st else None,
                               "status": own, "systemd": unit}, indent=2))
        return
    out = console()
    if st is not None:
        out.print(status_table(st))
        for key, value in (own or {}).items():
            out.print(f"{key}: {value}")
    else:
        out.print(f"[red]service not reachable[/red]: {unreachable}")
    if unit is not None:
        out.print(f"systemd: {unit.get('LoadState', '?')}, {unit.get('ActiveState', '?')} "
                  f"({unit.get('SubState', '?')}), main pid {unit.get('MainPID', '?')}, "
                  f"{unit.get('NRestarts', '0')} restarts, result {unit.get('Result', '?')}"
                  + (f", status: {unit['StatusText']}" if unit.get("StatusText") else ""))
    if st is None:
        sys.exit(3)


def _service_own_status(client: object, service: str) -> dict[str, object] | None:
    """A shipped service's own status operation, summarised (Guard: baseline,
    last check, running operations)."""
    if service != "guard":
        return None
    from aether.errors import AetherError

    try:
        st = client.call_by_name("guard.status")  # type: ignore[attr-defined]
    except AetherError as exc:
        return {"guard.status": f"unavailable: {exc}"}
    base = st.get("baseline")
    last = st.get("last_report")
    return {
        "policy": f"{st['policy_file']} ({len(st['paths'])} paths)",
        "baseline": (f"#{base['baseline_id']}, {base['files']} entries, "
                     f"{base['age_s'] / 3600:.1f} h old") if base else "none",
        "last check": (f"report #{last['report_id']}: {last['added']} added, "
                       f"{last['removed']} removed, {last['changed']} changed, "
                       f"{last['problems']} problems") if last else "none",
        "running": ", ".join(st.get("running", [])) or "nothing",
    }


def _default_paths(user: bool) -> list[str]:
    if user:
        home = os.path.expanduser("~")
        return [p for p in (f"{home}/.config", f"{home}/.local/bin", f"{home}/bin")
                if os.path.isdir(p)] or [f"{home}/.config"]
    return ["/etc", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin", "/boot"]


@service.command("install")
@click.argument("target", type=click.Choice(["guard"]))
@click.option("--user", is_flag=True, help="Install a user unit (~/.config/systemd/user).")
@click.option("--root", "root", type=click.Path(file_okay=False), default=None,
              envvar="AETHER_SYSTEMD_ROOT",
              help="Write under this directory instead of / (images, tests).")
@click.option("--watchdog", type=click.IntRange(2, 3600), default=30, show_default=True,
              help="WatchdogSec of the unit.")
@handle_errors
def install(target: str, user: bool, root: str | None, watchdog: int) -> None:
    """Write the systemd unit for TARGET and its policy file if none exists."""
    from aether.service import systemd
    from aether_guard.policy import default_policy_text, load_policy

    paths = systemd.paths_for(target, user=user, root=root)
    under_root = systemd.install_root(root) != Path("/")
    if not user and not under_root and os.geteuid() != 0:
        raise click.UsageError("installing a system unit needs root (or use --user / --root)")
    # The unit names the policy as the service will see it, without --root's prefix.
    seen_policy = (Path("/etc/aether") / f"{target}.toml" if not user
                   else Path.home() / ".config" / "aether" / f"{target}.toml")
    if user and not under_root:
        seen_policy = paths.policy
    paths.policy.parent.mkdir(parents=True, exist_ok=True)
    if paths.policy.exists():
        policy = load_policy(paths.policy)
        click.echo(f"policy {paths.policy} exists; kept")
    else:
        text = default_policy_text(_default_paths(user))
        fd = os.open(paths.policy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        policy = load_policy(paths.policy)
        click.echo(f"wrote policy {paths.policy}")
    unit = systemd.render_unit(target, user=user, policy_file=seen_policy,
                               writable=[r.path for r in policy.paths], watchdog_s=watchdog)
    paths.unit.parent.mkdir(parents=True, exist_ok=True)
    tmp = paths.unit.with_suffix(".tmp")
    tmp.write_text(unit)
    os.chmod(tmp, 0o644)
    os.replace(tmp, paths.unit)
    click.echo(f"wrote unit {paths.unit}")
    if not under_root:
        result = systemd.systemctl(["daemon-reload"], user=user)
        scope = "--user " if user else ""
        if result is None:
            click.echo("systemd is not running here: start the service with "
                       f"`aether service run {target}`")
        else:
            click.echo(f"enable and start it with: systemctl {scope}enable --now {paths.name}")


@service.command("uninstall")
@click.argument("target", type=click.Choice(["guard"]))
@click.option("--user", is_flag=True, help="Remove the user unit.")
@click.option("--root", "root", type=click.Path(file_okay=False), default=None,
              envvar="AETHER_SYSTEMD_ROOT", help="Remove from under this directory.")
@click.option("--purge", is_flag=True, help="Also remove the policy file.")
@handle_errors
def uninstall(target: str, user: bool, root: str | None, purge: bool) -> None:
    """Stop and disable TARGET's unit (when systemd runs) and remove it."""
    from aether.service import systemd

    paths = systemd.paths_for(target, user=user, root=root)
    if systemd.install_root(root) == Path("/"):
        systemd.systemctl(["disable", "--now", paths.name], user=user)
    removed = False
    for path in (paths.unit, *([paths.policy] if purge else [])):
        try:
            path.unlink()
            click.echo(f"removed {path}")
            removed = True
        except FileNotFoundError:
            pass
    if systemd.install_root(root) == Path("/"):
        systemd.systemctl(["daemon-reload"], user=user)
    if not removed:
        click.echo(f"{paths.unit} was not installed")
