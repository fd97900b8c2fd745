"""``aether demo``: Aether Guard end to end, each step shown as it happens.

Without root and without systemd: writes a policy for a directory tree it
creates, starts Guard as the current user in a private runtime directory,
connects over the seed's memory transport, takes a baseline (progress bar),
changes, adds and removes files, runs a check, prints the report, quarantines
one file and restores it exactly, then stops the service.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from .errors_cli import handle_errors

SEED_STEPS = {
    "connected": "",
    "service-verified": "",
    "hello": "",
    "ptracer-set": "",
    "blocks-allocated": "seed step 1",
    "pattern-written": "seed step 1",
    "pid-sent": "seed steps 2-5",
    "addresses-sent": "seed steps 6-13",
    "service-read-pattern": "seed steps 14-15",
    "zeros-verified": "seed steps 16-17",
    "ready": "",
    "socket-mode": "",
}


def make_tree(root: Path, files: int = 240, seed: int = 1337) -> int:
    """A reproducible directory tree of small and a few large files."""
    import random

    rng = random.Random(seed)
    total = 0
    for i in range(files):
        sub = root / f"dir{i % 12:02d}"
        sub.mkdir(exist_ok=True)
        size = rng.choice([0, 17, 512, 4096, 65536]) if i % 40 else 4 * 1024 * 1024
        (sub / f"file{i:04d}.bin").write_bytes(rng.randbytes(size))
        total += size
    return total


def write_policy(path: Path, tree: Path) -> None:
    path.write_text(
        "[guard]\nhash_workers = 2\n\n"
        f'[[paths]]\npath = "{tree}"\nexclude = ["*.tmp", "{tree}/cache"]\n\n'
        "[access]\nprivileged_uids = []\n"
    )


def tamper(tree: Path) -> list[str]:
    """Change, add and remove files the way an intruder might; returns what was done."""
    done = []
    target = tree / "dir00" / "file0000.bin"
    st = target.stat()
    with open(target, "r+b") as fh:
        fh.write(b"\x90\x90\x90\x90")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # cover the tracks
    done.append(f"overwrote 4 bytes of {target.relative_to(tree)}, size and mtime kept")
    mode_file = tree / "dir01" / "file0001.bin"
    os.chmod(mode_file, 0o4755)
    done.append(f"made {mode_file.relative_to(tree)} setuid (mode 4755)")
    removed = tree / "dir02" / "file0002.bin"
    removed.unlink()
    done.append(f"removed {removed.relative_to(tree)}")
    dropped = tree / "dir03" / ".hidden-payload"
    dropped.write_bytes(b"#!/bin/sh\necho owned\n")
    os.chmod(dropped, 0o755)
    done.append(f"added {dropped.relative_to(tree)}")
    (tree / "dir04" / "notes.tmp").write_text("excluded by the policy\n")
    done.append("added dir04/notes.tmp (excluded by the policy: not reported)")
    link = tree / "dir05" / "current"
    link.unlink()
    link.symlink_to("/etc/shadow")
    done.append("re-pointed dir05/current at /etc/shadow")
    return done


def _value(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name == "mode" and isinstance(value, int):
        return oct(value)
    if name in ("sha256", "blake2b") and isinstance(value, str):
        return value[:12] + "…"
    if name in ("mtime", "ctime") and isinstance(value, int):
        return time.strftime("%H:%M:%S", time.localtime(value / 1e9)) + f".{value % 10**9:09d}"
    return str(value)


@click.command()
@click.option("--files", default=240, show_default=True, help="Files in the demo tree.")
@click.option("--transport", type=click.Choice(["auto", "memory", "mapping", "socket"]),
              default="auto",
              show_default=True)
@click.option("--keep", is_flag=True, help="Keep the demo directory afterwards.")
@click.option("--gui", is_flag=True, help="Play the demo in the Qt control panel "
              "(needs a display and PySide6).")
@handle_errors
def demo(files: int, transport: str, keep: bool, gui: bool) -> None:
    """Aether Guard end to end: baseline, tamper, check, report, quarantine, restore."""
    if gui:
        from .demo_gui import start_gui_demo

        sys.exit(start_gui_demo(files, transport, keep))
    from rich.panel import Panel
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from aether.client import Client
    from aether.testing import ServiceProcess
    from aether_guard import schema

    from .render import console

    out = console()
    out.print(Panel.fit(
        "[bold]Aether demo[/bold]: Aether Guard, a file-integrity monitor, controlled through "
        "\"unmanaged memory IPC\"\n(seed 000: blocks in the client's memory, verified by the "
        "service with the 0x1337D00D pattern)",
    ))
    work = Path(tempfile.mkdtemp(prefix="aether-demo-"))
    runtime = work / "run"
    runtime.mkdir(mode=0o700)
    os.chmod(runtime, 0o700)
    tree = work / "tree"
    tree.mkdir()
    total = make_tree(tree, files)
    (tree / "dir05" / "current").symlink_to("file0005.bin")
    policy = work / "guard.toml"
    write_policy(policy, tree)
    os.environ["AETHER_RUNTIME_DIR"] = str(runtime)
    socket_path = runtime / "guard.ctl"
    env = {"AETHER_RUNTIME_DIR": str(runtime), "AETHER_GUARD_POLICY": str(policy),
           "AETHER_GUARD_STATE": str(work / "state")}
    service = ServiceProcess("guard", socket_path, env=env)
    try:
        t0 = time.monotonic()
        service.start()
        out.print(f"[green]●[/green] Guard started as uid {os.geteuid()}, pid {service.pid}, "
                  f"listening on {socket_path} (ready after {time.monotonic() - t0:.2f} s, "
                  "sd_notify READY=1)")
        out.print(f"  policy {policy}: {tree} ({files + 1} entries, {total / 1e6:.1f} MB), "
                  "excluding *.tmp")

        def on_step(step: str, text: str) -> None:
            tag = SEED_STEPS.get(step, "")
            label = f"[cyan]{tag:>16}[/cyan]" if tag else " " * 16
            out.print(f"{label}  [bold]{step}[/bold]: {text}")

        out.print("\n[bold]Handshake[/bold]")
        with Client(socket_path, schema=schema, transport=transport, on_step=on_step) as client:
            if client.fallback_reason:
                out.print(f"[yellow]note:[/yellow] {client.fallback_reason}")

            def run(label: str, params: Any) -> Any:
                progress = Progress(TextColumn(f"  {label}"), BarColumn(),
                                    TextColumn("{task.percentage:>5.1f}%"), TimeElapsedColumn(),
                                    TextColumn("{task.fields[msg]}"), console=out)
                task = progress.add_task(label, total=1000, msg="")
                with progress:
                    op = client.start(params, on_progress=lambda o: progress.update(
                        task, completed=o.permille, msg=o.progress_info.message[-40:]))
                    result = op.wait(timeout=600)
                    progress.update(task, completed=1000)
                return result

            out.print("\n[bold]1. guard.baseline[/bold] (privileged: uid "
                      f"{os.geteuid()} is the service's own)")
            base: schema.BaselineSummary = run("baseline", schema.Baseline())
            b = base.baseline
            out.print(f"  baseline {b.baseline_id}: {b.files} entries, {b.bytes / 1e6:.1f} MB "
                      f"hashed (sha256) in {base.elapsed_s:.2f} s")

            out.print("\n[bold]2. Tampering with the tree[/bold]")
            for line in tamper(tree):
                out.print(f"  - {line}")

            out.print("\n[bold]3. guard.check[/bold]")
            summary: schema.CheckSummary = run("check", schema.Check())
            r = summary.report
            out.print(f"  report {r.report_id}: {r.files_checked} entries checked in "
                      f"{r.elapsed_s:.2f} s: {r.added} added, {r.removed} removed, "
                      f"{r.changed} changed, {r.problems} problems")
            page: schema.ReportPage = client.call(schema.Report(report_id=r.report_id))
            table = Table("kind", "path", "attribute", "baseline", "now",
                          title=f"guard.report {r.report_id} ({page.total} findings)")
            colours = {"added": "green", "removed": "red", "changed": "yellow",
                       "problem": "magenta"}
            for change in page.changes:
                rel = os.path.relpath(change.path, tree)
                kind = f"[{colours[change.kind]}]{change.kind}[/]"
                if not change.attributes:
                    table.add_row(kind, rel, change.problem or change.type, "", "")
                for i, a in enumerate(change.attributes):
                    table.add_row(kind if i == 0 else "", rel if i == 0 else "", a.name,
                                  _value(a.name, a.old), _value(a.name, a.new))
            out.print(table)

            suspicious = tree / "dir03" / ".hidden-payload"
            before = suspicious.stat()
            out.print(f"\n[bold]4. guard.quarantine[/bold] {suspicious.relative_to(tree)}")
            entry: schema.VaultEntry = client.call(schema.Quarantine(path=str(suspicious)))
            vault: schema.VaultList = client.call(schema.Vault())
            out.print(f"  moved into the vault as entry {entry.entry_id} (sha256 "
                      f"{entry.sha256[:16]}…, mode {oct(entry.mode)}); it exists: "
                      f"{suspicious.exists()}; vault holds {len(vault.entries)} file(s)")
            out.print(f"\n[bold]5. guard.restore[/bold] entry {entry.entry_id}")
            client.call(schema.Restore(entry_id=entry.entry_id))
            after = suspicious.stat()
            same = all(getattr(before, f) == getattr(after, f) for f in (
                "st_mode", "st_uid", "st_gid", "st_size", "st_atime_ns", "st_mtime_ns"))
            out.print(f"  restored: content, mode, owner and times identical: "
                      f"[{'green' if same else 'red'}]{same}[/]")

            st: schema.GuardStatus = client.call(schema.GuardStatusParams())
            out.print(f"\nguard.status: baseline {st.baseline.baseline_id if st.baseline else '-'}"
                      f", last report {st.last_report.report_id if st.last_report else '-'}, "
                      f"{st.vault_entries} file(s) in quarantine, database "
                      f"{st.database_bytes / 1024:.0f} KiB; this session on the "
                      f"[bold]{client.transport}[/bold] transport")
        code = service.stop()
        out.print(f"[green]●[/green] Guard stopped with SIGTERM, exit code {code}")
        if code != 0 or not same:
            sys.exit(5)
    finally:
        service.kill()
        if keep:
            out.print(f"demo files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
