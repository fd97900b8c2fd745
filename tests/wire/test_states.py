"""aether.wire.states: the transition tables and their rendering in docs/protocol.md §8."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from aether.wire import State
from aether.wire.states import ANY_STATE, CLIENT_TABLE, HANDSHAKE_STATES, SERVICE_TABLE, Table

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gen_state_tables.py"
DOC = ROOT / "docs" / "protocol.md"


def test_protocol_md_state_tables_are_current() -> None:
    """protocol.md §8 is the output of scripts/gen_state_tables.py for these tables."""
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_every_table_entry_cites_a_step_of_protocol_md() -> None:
    """Each entry's comment names a step id (H1-H8, S1, O1-O6) that protocol.md defines."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import gen_state_tables
    finally:
        sys.path.remove(str(SCRIPT.parent))
    notes = gen_state_tables.step_comments()
    doc = DOC.read_text(encoding="utf-8")
    for name, table in (("SERVICE_TABLE", SERVICE_TABLE), ("CLIENT_TABLE", CLIENT_TABLE)):
        for state, transitions in table.items():
            for direction, event in transitions:
                note = notes[(name, state.value, direction, event.__name__)]
                step = re.match(r"([HSOM]\d)\b", note)
                assert step, f"{name} {state.value} {direction} {event.__name__}: {note!r}"
                assert f"| {step.group(1)} |" in doc


@pytest.mark.parametrize(("table", "initial"), [(SERVICE_TABLE, State.SEND_HELLO),
                                                (CLIENT_TABLE, State.WAIT_HELLO)])
def test_tables_reach_idle_and_every_state_they_name(table: Table, initial: State) -> None:
    """protocol.md §8: every state a table names is reachable from its initial state."""
    seen = {initial}
    frontier = [initial]
    while frontier:
        for nxt in table.get(frontier.pop(), {}).values():
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    named = set(table) | {n for t in table.values() for n in t.values()}
    assert named <= seen
    assert {State.IDLE, State.AWAIT_START, State.RUNNING} <= seen
    assert State.ERROR not in named and State.CLOSED not in named  # only via ANY_STATE/guards


def test_any_state_only_ends_sessions() -> None:
    assert set(ANY_STATE.values()) == {State.CLOSED}


def test_handshake_states_are_the_states_before_idle() -> None:
    for table in (SERVICE_TABLE, CLIENT_TABLE):
        for state in table:
            assert (state in HANDSHAKE_STATES) == (
                state not in (State.IDLE, State.AWAIT_START, State.RUNNING)
            )
