"""``aether bench guard``: Aether Guard against AIDE on the same generated tree.

One run: generate a tree (default 100,000 small files and a few large ones),
then, with the page cache warm for both, Guard's ``guard.baseline`` (through
a real client and service) and ``aide --init`` with an equivalent
configuration (sha256 plus permissions, inode, owner, group, size, mtime,
ctime, file type and link target; the same number of hashing threads), then
modify a few files and time ``guard.check`` against ``aide --check``.

Peak memory is the high-water RSS: Guard's service process (``VmHWM``) and
AIDE's process (``wait4`` rusage). CPU seconds (user plus system; Guard's
service process from ``/proc/PID/stat`` around each call, AIDE's from
``wait4``) are reported too: on a shared machine they vary much less with
other load than wall-clock seconds do.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import click

AIDE_ATTRIBUTES = "p+i+u+g+s+m+c+sha256+ftype+l"


def make_tree(root: Path, files: int, large: int, large_mib: int, seed: int = 7) -> int:
    """``files`` small files (0-8 KiB) in 100-file directories, plus ``large``
    files of ``large_mib`` MiB; returns the total bytes."""
    rng = random.Random(seed)
    total = 0
    blob = rng.randbytes(8192 + 4096)
    for i in range(files):
        d = root / f"d{i // 1000:03d}" / f"s{(i // 100) % 10}"
        if i % 100 == 0:
            d.mkdir(parents=True, exist_ok=True)
        size = rng.randrange(0, 8192)
        off = rng.randrange(0, 4096)
        (d / f"f{i:06d}").write_bytes(blob[off:off + size])
        total += size
    big = root / "large"
    big.mkdir(exist_ok=True)
    chunk = rng.randbytes(1 << 20)
    for j in range(large):
        with open(big / f"big{j}.bin", "wb") as fh:
            for k in range(large_mib):
                fh.write(chunk[k % 7:] + chunk[:k % 7])
        total += large_mib << 20
    return total


def tamper(root: Path, count: int) -> None:
    rng = random.Random(11)
    files = sorted((root / "d000" / "s0").iterdir())
    for path in rng.sample(files, min(count, len(files))):
        path.write_bytes(b"tampered " + path.name.encode())


def _aide_conf(work: Path, tree: Path, workers: int) -> Path:
    conf = work / "aide.conf"
    conf.write_text(
        f"database_in=file:{work}/aide.db\n"
        f"database_out=file:{work}/aide.db.new\n"
        "gzip_dbout=no\n"
        f"report_url=file:{work}/aide.report\n"
        f"num_workers={workers}\n"
        f"Guard = {AIDE_ATTRIBUTES}\n"
        f"{tree} Guard\n"
    )
    return conf


def _run_aide(args: list[str]) -> tuple[float, int, int, float]:
    """(seconds, exit code, peak RSS bytes, CPU seconds) of one aide run."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    code = proc.returncode
    if code >= 14:  # 0-7: differences found; 14+ are AIDE's errors
        raise click.ClickException(f"aide failed ({code}): {err[-2000:]}")
    return elapsed, code, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


def _cpu_s(pid: int) -> float:
    """User plus system CPU seconds of a running process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def run(files: int, large: int, large_mib: int, workers: int, directory: str | None,
        tamper_count: int = 100) -> dict[str, Any]:
    from aether.client import Client
    from aether.testing import ServiceProcess
    from aether_guard import schema

    aide = shutil.which("aide")
    work = Path(tempfile.mkdtemp(prefix="aether-bench-guard-", dir=directory))
    try:
        tree = work / "tree"
        tree.mkdir()
        t0 = time.perf_counter()
        total = make_tree(tree, files, large, large_mib)
        entries = sum(1 + len(f) for _, _d, f in os.walk(tree))
        # Write the new tree back now: otherwise the kernel does it (a flusher
        # thread, ~700 MB) during whichever tool runs first, 30 s after writing.
        os.sync()
        gen_s = time.perf_counter() - t0
        runtime = work / "run"
        runtime.mkdir(mode=0o700)
        policy = work / "guard.toml"
        policy.write_text(f'[guard]\nhash_workers = {workers}\n\n[[paths]]\npath = "{tree}"\n'
                          'attributes = ["sha256", "size", "mode", "uid", "gid", "mtime", '
                          '"ctime", "inode", "target", "type"]\n')
        svc = ServiceProcess("guard", runtime / "guard.ctl", env={
            "AETHER_RUNTIME_DIR": str(runtime), "AETHER_GUARD_POLICY": str(policy),
            "AETHER_GUARD_STATE": str(work / "state")}).start()
        result: dict[str, Any] = {"files": files, "large_files": large, "large_mib": large_mib,
                                  "entries": entries, "bytes": total, "workers": workers,
                                  "generate_s": round(gen_s, 2)}
        try:
            # Warm the page cache the same way for both tools.
            for dirpath, _dirs, names in os.walk(tree):
                for n in names:
                    with open(os.path.join(dirpath, n), "rb") as fh:
                        while fh.read(1 << 20):
                            pass
            with Client(runtime / "guard.ctl", schema=schema) as client:
                cpu, t = _cpu_s(svc.pid), time.perf_counter()
                base = client.call(schema.Baseline(), timeout=3600)
                result["guard_baseline_s"] = time.perf_counter() - t
                result["guard_baseline_cpu_s"] = _cpu_s(svc.pid) - cpu
                result["guard_baseline_entries"] = base.baseline.files
                aide_init = aide_check = None
                if aide:
                    conf = _aide_conf(work, tree, workers)
                    aide_init = _run_aide([aide, "--config", str(conf), "--init"])
                    os.replace(work / "aide.db.new", work / "aide.db")
                tamper(tree, tamper_count)
                cpu, t = _cpu_s(svc.pid), time.perf_counter()
                check = client.call(schema.Check(), timeout=3600)
                result["guard_check_s"] = time.perf_counter() - t
                result["guard_check_cpu_s"] = _cpu_s(svc.pid) - cpu
                result["guard_check_changed"] = check.report.changed
                if aide:
                    aide_check = _run_aide([aide, "--config", str(conf), "--check"])
            result["guard_peak_rss"] = _vm_hwm(svc.pid)
        finally:
            svc.stop()
        if aide_init and aide_check:
            result.update(aide_init_s=aide_init[0], aide_init_peak_rss=aide_init[2],
                          aide_init_cpu_s=aide_init[3],
                          aide_check_s=aide_check[0], aide_check_exit=aide_check[1],
                          aide_check_peak_rss=aide_check[2], aide_check_cpu_s=aide_check[3])
            result["baseline_speed_vs_aide"] = aide_init[0] / result["guard_baseline_s"]
            result["check_speed_vs_aide"] = aide_check[0] / result["guard_check_s"]
        else:
            result["aide"] = "not installed (bash scripts/install.sh bench)"
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


@click.command("guard")
@click.option("--files", type=click.IntRange(100), default=100_000, show_default=True,
              help="Small files in the generated tree.")
@click.option("--large", type=click.IntRange(0), default=4, show_default=True,
              help="Large files.")
@click.option("--large-mib", type=click.IntRange(1), default=64, show_default=True,
              help="Size of each large file.")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Hashing threads for both Guard and AIDE (default: CPUs, at most 4).")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None,
              help="Where to generate the tree (default: the temp directory).")
@click.option("--quick", is_flag=True, help="10,000 files and 2 x 16 MiB.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write figures here.")
@click.pass_context
def command(ctx: click.Context, files: int, large: int, large_mib: int, workers: int | None,
            directory: str | None, quick: bool, json_path: str | None) -> None:
    """Guard's baseline and check against AIDE's --init and --check on one tree."""
    import json

    from rich.table import Table

    from aether.cli.render import console

    obj = ctx.obj or {}
    if quick or obj.get("quick"):
        files, large, large_mib = min(files, 10_000), min(large, 2), min(large_mib, 16)
    workers = workers or min(4, os.cpu_count() or 1)
    click.echo(f"generating {files} small + {large} x {large_mib} MiB files...", err=True)
    r = run(files, large, large_mib, workers, directory)
    mb = r["bytes"] / 1e6
    n = r["entries"]
    table = Table("tool", "phase", "seconds", "CPU s", "entries/s", "MB/s", "peak RSS MB",
                  "speed vs AIDE", title=f"{n} entries, {mb:.0f} MB, {workers} hashing "
                  "threads each, warm cache")

    def row(tool: str, phase: str, seconds: float, cpu: float, rss: int,
            ratio: float | None) -> None:
        table.add_row(tool, phase, f"{seconds:.2f}", f"{cpu:.2f}", f"{n / seconds:,.0f}",
                      f"{mb / seconds:,.0f}", f"{rss / 1e6:.0f}",
                      f"{ratio:.2f}x" if ratio else "")

    row("Guard", "baseline", r["guard_baseline_s"], r["guard_baseline_cpu_s"], r["guard_peak_rss"],
        r.get("baseline_speed_vs_aide"))
    if "aide_init_s" in r:
        row("AIDE", "--init", r["aide_init_s"], r["aide_init_cpu_s"], r["aide_init_peak_rss"], None)
    row("Guard", "check", r["guard_check_s"], r["guard_check_cpu_s"], r["guard_peak_rss"],
        r.get("check_speed_vs_aide"))
    if "aide_check_s" in r:
        row("AIDE", "--check", r["aide_check_s"], r["aide_check_cpu_s"], r["aide_check_peak_rss"],
            None)
    console().print(table)
    if "aide" in r:
        click.echo(f"AIDE: {r['aide']}")
    goals = [f"peak RSS {r['guard_peak_rss'] / 1e6:.0f} MB (goal < 200 MB)"]
    if "baseline_speed_vs_aide" in r:
        goals.insert(0, f"baseline {r['baseline_speed_vs_aide']:.2f}x AIDE --init, check "
                        f"{r['check_speed_vs_aide']:.2f}x AIDE --check (goal >= 1)")
    click.echo("; ".join(goals))
    json_path = json_path or obj.get("json_path")
    if json_path:
        Path(json_path).write_text(json.dumps({"suite": "guard", "results": [r]}, indent=2))
        click.echo(f"figures written to {json_path}")
