"""``aether demo``: the seed's system end to end, each step shown as it happens.

Starts Aether Guard as the current user in a private runtime directory,
connects a client over the memory transport, hashes a directory tree it
creates (with a progress bar), prints the result and stops the service.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

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


@click.command()
@click.option("--files", default=240, show_default=True, help="Files in the demo tree.")
@click.option("--transport", type=click.Choice(["auto", "memory", "mapping", "socket"]),
              default="auto",
              show_default=True)
@click.option("--keep", is_flag=True, help="Keep the demo directory afterwards.")
@handle_errors
def demo(files: int, transport: str, keep: bool) -> None:
    """Run the seed's system end to end: service, handshake, an operation with progress."""
    from rich.panel import Panel
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from aether.client import Client
    from aether.testing import ServiceProcess
    from aether_guard import schema

    from .render import console

    out = console()
    out.print(Panel.fit(
        "[bold]Aether demo[/bold]: a GUI/CLI controls a service through "
        "\"unmanaged memory IPC\"\n(seed 000: blocks in the client's memory, verified by the "
        "service with the 0x1337D00D pattern)",
    ))
    work = Path(tempfile.mkdtemp(prefix="aether-demo-"))
    runtime = work / "run"
    runtime.mkdir(mode=0o700)
    os.chmod(runtime, 0o700)
    os.environ["AETHER_RUNTIME_DIR"] = str(runtime)
    socket_path = runtime / "guard.ctl"
    service = ServiceProcess("guard", socket_path, env={"AETHER_RUNTIME_DIR": str(runtime)})
    try:
        t0 = time.monotonic()
        service.start()
        out.print(f"[green]●[/green] service [bold]guard[/bold] started as uid {os.geteuid()}, "
                  f"pid {service.pid}, listening on {socket_path} "
                  f"(ready after {time.monotonic() - t0:.2f} s, sd_notify READY=1)")

        def on_step(step: str, text: str) -> None:
            tag = SEED_STEPS.get(step, "")
            label = f"[cyan]{tag:>16}[/cyan]" if tag else " " * 16
            out.print(f"{label}  [bold]{step}[/bold]: {text}")

        out.print("\n[bold]Handshake[/bold]")
        with Client(socket_path, schema=schema, transport=transport, on_step=on_step) as client:
            if client.fallback_reason:
                out.print(f"[yellow]note:[/yellow] {client.fallback_reason}")
            tree = work / "tree"
            tree.mkdir()
            total = make_tree(tree, files)
            out.print(f"\n[bold]Operation[/bold]: guard.hash_tree over {files} files "
                      f"({total / 1e6:.1f} MB) in {tree}")
            progress = Progress(TextColumn("  hashing"), BarColumn(),
                                TextColumn("{task.percentage:>5.1f}%"), TimeElapsedColumn(),
                                TextColumn("{task.fields[msg]}"), console=out)
            task = progress.add_task("hash", total=1000, msg="")
            with progress:
                op = client.start(
                    schema.HashTree(root=str(tree)),
                    on_progress=lambda o: progress.update(
                        task, completed=o.permille, msg=o.progress_info.message[-32:]),
                )
                result: schema.TreeDigest = op.wait(timeout=300)
                progress.update(task, completed=1000)
            table = Table("file", "bytes", "sha256", title=f"{len(result.files)} files hashed "
                          f"in {result.elapsed_s:.3f} s (operation {op.op_id})")
            for f in result.files[:8]:
                table.add_row(f.path, str(f.size), f.digest[:32] + "…")
            if len(result.files) > 8:
                table.add_row(f"… {len(result.files) - 8} more", "", "")
            out.print(table)
            st = client.status()
            out.print(f"service status: {st.sessions} session(s), {st.operations_served} "
                      f"operations served, this session on the [bold]{client.transport}"
                      f"[/bold] transport")
        code = service.stop()
        out.print(f"[green]●[/green] service stopped with SIGTERM, exit code {code}")
        if code != 0:
            sys.exit(5)
    finally:
        service.kill()
        if keep:
            out.print(f"demo files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
