"""The ``aether`` command against a real service: output and exit codes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from aether.testing import python_env, sigint_as_from_a_terminal


def aether(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aether", *args], capture_output=True,
                          text=True, env=python_env(env), timeout=120)


def test_help_lists_commands_and_exit_codes():
    r = aether("--help")
    assert r.returncode == 0
    for word in ("demo", "service", "call", "describe", "list", "Exit codes"):
        assert word in r.stdout


def test_usage_error_exit_code():
    assert aether("call").returncode == 2
    assert aether("no-such-command").returncode == 2


def test_call_describe_list(guard, runtime_dir, tmp_path):
    env = {"AETHER_RUNTIME_DIR": str(runtime_dir)}
    (tmp_path / "a.txt").write_text("hello\n")
    r = aether("call", "guard", "guard.hash_tree", f"root={tmp_path}", "--json", env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["files"][0]["path"] == "a.txt"
    assert out["files"][0]["digest"] == (
        "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03")

    # --json PARAMS: parameters from a JSON object, result as JSON
    r = aether("call", "guard", "guard.hash_tree", "--json", json.dumps({"root": str(tmp_path)}),
               env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["files"][0]["path"] == "a.txt"
    bad = aether("call", "guard", "guard.hash_tree", "--json", "{not json", env=env)
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr

    r = aether("describe", "guard", "--json", env=env)
    assert r.returncode == 0, r.stderr
    names = [op["name"] for op in json.loads(r.stdout)["operations"]]
    assert "guard.hash_tree" in names and "aether.echo" in names

    r = aether("list", "--json", env=env)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert any(row["name"] == "guard" and row["running"] for row in rows)


def test_exit_codes_distinguish_failures(guard, runtime_dir):
    env = {"AETHER_RUNTIME_DIR": str(runtime_dir)}
    failed = aether("call", "guard", "guard.hash_tree", "root=/nonexistent/dir", env=env)
    assert failed.returncode == 1
    assert "FAILED" in failed.stderr
    bad = aether("call", "guard", "guard.hash_tree", "root=5", env=env)
    assert bad.returncode == 2 and "$.root" in bad.stderr
    unknown = aether("call", "guard", "guard.nope", env=env)
    assert unknown.returncode == 2
    gone = aether("call", "nosuchservice", "aether.echo", env=env)
    assert gone.returncode == 3 and "no service named" in gone.stderr


def test_service_run_refuses_a_live_socket(guard, runtime_dir):
    r = aether("service", "run", "guard", "--socket", str(guard.socket_path),
               env={"AETHER_RUNTIME_DIR": str(runtime_dir)})
    assert r.returncode == 3
    assert "already listening" in r.stderr


def test_demo_runs_end_to_end():
    r = aether("demo", "--files", "40")
    assert r.returncode == 0, r.stdout + r.stderr
    for text in ("blocks-allocated", "pattern-written", "pid-sent", "addresses-sent",
                 "service-read-pattern", "zeros-verified", "guard.baseline", "guard.report",
                 "1 added, 1 removed", "identical: True", "exit code 0"):
        assert text in r.stdout, text


def test_ctrl_c_during_a_call_ends_the_operation_and_exits_130(testsvc, runtime_dir):
    from aether.client import Client
    from aether.testing.waiting import wait_until

    def running() -> bool:
        with Client(testsvc.socket_path, transport="socket") as probe:
            return any(s.running == "test.slow" for s in probe.status().session_list)

    proc = subprocess.Popen(
        [sys.executable, "-m", "aether", "call", str(testsvc.socket_path), "test.slow",
         "steps=100000", "delay=0.01", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=python_env({"AETHER_RUNTIME_DIR": str(runtime_dir), "PYTHONFAULTHANDLER": "1"}),
        preexec_fn=sigint_as_from_a_terminal)  # a background test run ignores SIGINT
    try:
        wait_until(running, 30, "the CLI's operation to run", watch_pid=proc.pid)
        proc.send_signal(signal.SIGINT)
        try:
            _out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
            _out, err = proc.communicate(timeout=10)
            raise AssertionError(f"the CLI ignored SIGINT for 30 s:\n{err}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "test.slow" in err and "Traceback" not in err
    wait_until(lambda: not running(), 10, "the service to cancel the operation",
               watch_pid=testsvc.pid)
