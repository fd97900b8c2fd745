"""systemd units for Aether services: generate, install, uninstall, query.

The unit runs ``python -m aether service run NAME`` as ``Type=notify`` (the
host sends READY/STATUS/WATCHDOG/STOPPING), restarts on failure within a
start limit, and is hardened as far as a root file scanner allows: it must
read every file and write only its state, its runtime directory and, for
quarantine and restore, the trees its policy names (``ReadWritePaths``);
everything else is read-only (``ProtectSystem=strict``).

Everything is written under ``root`` (default ``/``; ``$AETHER_SYSTEMD_ROOT``
or ``--root`` for tests and image builds).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ENV_ROOT = "AETHER_SYSTEMD_ROOT"

#: Capabilities a root file scanner with a quarantine needs, and the memory
#: transport (reading a client's memory through /proc/PID/mem).
CAPABILITIES = ("CAP_DAC_READ_SEARCH", "CAP_DAC_OVERRIDE", "CAP_CHOWN", "CAP_FOWNER",
                "CAP_FSETID", "CAP_SYS_PTRACE")

DESCRIPTIONS = {"guard": "Aether Guard file-integrity monitor"}


@dataclass(frozen=True)
class UnitPaths:
    unit: Path
    policy: Path
    name: str  # the unit name, e.g. aether-guard.service


def unit_name(service: str) -> str:
    return f"aether-{service}.service"


def install_root(root: str | os.PathLike[str] | None) -> Path:
    return Path(root or os.environ.get(ENV_ROOT) or "/")


def paths_for(service: str, *, user: bool, root: str | os.PathLike[str] | None) -> UnitPaths:
    base = install_root(root)
    name = unit_name(service)
    if user:
        home = Path.home() if base == Path("/") else base
        return UnitPaths(home / ".config" / "systemd" / "user" / name,
                         home / ".config" / "aether" / f"{service}.toml", name)
    return UnitPaths(base / "etc" / "systemd" / "system" / name,
                     base / "etc" / "aether" / f"{service}.toml", name)


def _quote(arg: str) -> str:
    if arg and all(c.isalnum() or c in "/._-=:+@" for c in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_unit(service: str, *, user: bool, policy_file: Path,
                writable: Sequence[str] = (), python: str | None = None,
                watchdog_s: int = 30) -> str:
    """The unit file text (``policy_file`` as the service will see it)."""
    python = python or sys.executable
    exec_start = " ".join(_quote(a) for a in (python, "-m", "aether", "service", "run", service))
    description = DESCRIPTIONS.get(service, f"Aether service {service}")
    env_key = f"AETHER_{service.upper().replace('-', '_')}_POLICY"
    lines = [
        "# Written by `aether service install`; `aether service uninstall` removes it.",
        "[Unit]",
        f"Description={description}",
        "After=local-fs.target",
        "StartLimitIntervalSec=300",
        "StartLimitBurst=5",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={exec_start}",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartSec=2",
        f"WatchdogSec={watchdog_s}",
        "TimeoutStopSec=30",
        f"Environment={_quote(f'{env_key}={policy_file}')}",
        "Environment=PYTHONUNBUFFERED=1",
        "RuntimeDirectory=aether",
        # Other Aether services keep their sockets in the same directory.
        "RuntimeDirectoryPreserve=yes",
        f"StateDirectory=aether-{service}",
        "StateDirectoryMode=0700",
        "UMask=0077",
        "NoNewPrivileges=yes",
    ]
    if not user:
        lines += [
            "RuntimeDirectoryMode=0755",
            "ProtectSystem=strict",
            *(f"ReadWritePaths=-{_quote(p)}" for p in writable),
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectKernelLogs=yes",
            "ProtectControlGroups=yes",
            "ProtectClock=yes",
            "ProtectHostname=yes",
            "PrivateNetwork=yes",
            "RestrictAddressFamilies=AF_UNIX",
            "RestrictNamespaces=yes",
            "RestrictRealtime=yes",
            "LockPersonality=yes",
            "SystemCallArchitectures=native",
            f"CapabilityBoundingSet={' '.join(CAPABILITIES)}",
        ]
    lines += ["", "[Install]", f"WantedBy={'default.target' if user else 'multi-user.target'}",
              ""]
    return "\n".join(lines)


def systemd_running() -> bool:
    """True if PID 1 is systemd (sd_booted(3))."""
    return os.path.isdir("/run/systemd/system")


def systemctl(args: Sequence[str], *, user: bool) -> subprocess.CompletedProcess[str] | None:
    exe = shutil.which("systemctl")
    if exe is None or not systemd_running():
        return None
    return subprocess.run([exe, *(["--user"] if user else []), *args], capture_output=True,
                          text=True, timeout=30, check=False)


def systemd_status(service: str, *, user: bool) -> dict[str, str] | None:
    """systemd's view of the unit (None when systemd is not running)."""
    result = systemctl(["show", unit_name(service), "--property=LoadState,ActiveState,"
                        "SubState,MainPID,NRestarts,Result,StatusText,UnitFileState,"
                        "ActiveEnterTimestamp"], user=user)
    if result is None or result.returncode != 0:
        return None
    return dict(line.partition("=")[::2] for line in result.stdout.splitlines() if "=" in line)


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` on a unit file (raises FileNotFoundError without it)."""
    exe = shutil.which("systemd-analyze")
    if exe is None:
        raise FileNotFoundError("systemd-analyze is not installed (Debian package systemd)")
    return subprocess.run([exe, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60, check=False)
