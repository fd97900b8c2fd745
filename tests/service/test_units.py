"""``aether service install/uninstall/status``: units written under a temp
root, checked with ``systemd-analyze verify``."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from aether.service import systemd
from aether.testing import python_env
from aether_guard.policy import load_policy

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze missing (scripts/install.sh test)")


def aether(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aether", *args], capture_output=True,
                          text=True, env=python_env(env), timeout=120)


def _verify(unit, user: bool, tmp_path) -> None:
    env = {"XDG_RUNTIME_DIR": str(tmp_path)} if user else {}
    args = ["systemd-analyze", *(["--user"] if user else []), "verify", str(unit)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120,
                       env={**python_env(), **env})
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", (
        r.stdout + r.stderr)


@needs_analyze
@pytest.mark.parametrize("user", [False, True])
def test_install_writes_a_verified_unit_and_a_policy(tmp_path, user):
    root = tmp_path / "root"
    flags = ["--user"] if user else []
    r = aether("service", "install", "guard", *flags, "--root", str(root))
    assert r.returncode == 0, r.stderr
    paths = systemd.paths_for("guard", user=user, root=root)
    unit = paths.unit.read_text()
    service = unit.split("[Service]")[1]
    unit_section = unit.split("[Unit]")[1].split("[Service]")[0]
    for line in ("StartLimitIntervalSec=300", "StartLimitBurst=5"):
        assert line in unit_section
    for line in ("Type=notify", "Restart=on-failure", "RuntimeDirectory=aether",
                 "StateDirectory=aether-guard", "WatchdogSec=30", "NoNewPrivileges=yes",
                 "ExecReload=/bin/kill -HUP $MAINPID"):
        assert line in service
    if not user:
        assert "ProtectSystem=strict" in service and "ReadWritePaths=-/etc" in service
        assert "Environment=AETHER_GUARD_POLICY=/etc/aether/guard.toml" in service
    policy = load_policy(paths.policy)
    assert policy.paths and policy.schedule_s == 3600
    _verify(paths.unit, user, tmp_path)

    # A second install keeps an existing (edited) policy and follows its paths.
    paths.policy.write_text(f'[[paths]]\npath = "{tmp_path}"\n')
    r = aether("service", "install", "guard", *flags, "--root", str(root), "--watchdog", "10")
    assert r.returncode == 0 and "exists; kept" in r.stdout
    assert paths.policy.read_text() == f'[[paths]]\npath = "{tmp_path}"\n'
    text = paths.unit.read_text()
    assert "WatchdogSec=10" in text
    if not user:
        assert f"ReadWritePaths=-{tmp_path}" in text and "ReadWritePaths=-/etc" not in text
    _verify(paths.unit, user, tmp_path)

    r = aether("service", "uninstall", "guard", *flags, "--root", str(root))
    assert r.returncode == 0 and not paths.unit.exists() and paths.policy.exists()
    r = aether("service", "uninstall", "guard", *flags, "--root", str(root), "--purge")
    assert "removed" in r.stdout and not paths.policy.exists()
    r = aether("service", "uninstall", "guard", *flags, "--root", str(root))
    assert "was not installed" in r.stdout


def test_install_refuses_a_bad_existing_policy(tmp_path):
    root = tmp_path / "root"
    paths = systemd.paths_for("guard", user=False, root=root)
    paths.policy.parent.mkdir(parents=True)
    paths.policy.write_text("[[paths]]\npath = 'relative'\n")
    r = aether("service", "install", "guard", "--root", str(root))
    assert r.returncode != 0 and "line 2" in r.stderr
    assert not paths.unit.exists()


@needs_analyze
def test_verify_catches_a_broken_unit(tmp_path):
    bad = tmp_path / "aether-bad.service"
    bad.write_text(systemd.render_unit("guard", user=False, policy_file=tmp_path / "p.toml")
                   .replace("Type=notify", "Type=notifyy"))
    with pytest.raises(AssertionError):
        _verify(bad, False, tmp_path)


def test_status_combines_service_and_systemd_views(genv_status):
    r = aether("service", "status", "guard", "--json",
               env={"AETHER_RUNTIME_DIR": str(genv_status)})
    assert r.returncode == 0, r.stderr
    import json
    out = json.loads(r.stdout)
    assert out["service"]["service"] == "guard"
    assert out["status"]["baseline"] == "none" and "(1 paths)" in out["status"]["policy"]
    # PID 1 is not systemd here: systemd's view is absent, not an error.
    assert out["systemd"] is None or "ActiveState" in out["systemd"]


@pytest.fixture
def genv_status(tmp_path):
    import tempfile
    from pathlib import Path

    from aether.testing import ServiceProcess

    runtime = Path(tempfile.mkdtemp(prefix="ag-rt-"))
    (tmp_path / "p.toml").write_text(f'[[paths]]\npath = "{tmp_path}"\n')
    svc = ServiceProcess("guard", runtime / "guard.ctl", env={
        "AETHER_RUNTIME_DIR": str(runtime), "AETHER_GUARD_POLICY": str(tmp_path / "p.toml"),
        "AETHER_GUARD_STATE": str(tmp_path / "state")}).start()
    yield runtime
    svc.kill()
    shutil.rmtree(runtime, ignore_errors=True)
