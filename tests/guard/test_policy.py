"""Policy parsing: every bad input is a PolicyError naming a line, never a crash."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from aether_guard.policy import PathRule, PolicyError, parse_duration, parse_policy

GOOD = """\
[guard]
hash_workers = 2
schedule = "30m"

[[paths]]
path = "/etc"
exclude = ["*.swp", "/etc/mtab"]

[[paths]]
path = "/usr/bin"
attributes = ["blake2b", "mode"]

[access]
privileged_uids = [0, 1000]
read_group = 0
"""


def test_a_good_policy_parses():
    p = parse_policy(GOOD, "g.toml")
    assert [r.path for r in p.paths] == ["/etc", "/usr/bin"]
    assert p.schedule_s == 1800 and p.hash_workers == 2
    assert p.paths[1].attributes == ("blake2b", "mode")
    assert p.access.read_groups == frozenset({0}) and 1000 in p.access.privileged_uids
    assert p.rule_for("/etc/ssh/sshd_config") is p.paths[0]
    assert not p.covers("/etc/mtab") and not p.covers("/etc/x.swp") and p.covers("/etc/x")
    assert not p.covers("/etcetera") and not p.covers("/usr")


@pytest.mark.parametrize(("text", "line", "words"), [
    ("[guard]\nhash_workers = 0\n[[paths]]\npath = '/x'\n", 2, "hash_workers"),
    ("[guard]\nschedule = 'soon'\n[[paths]]\npath = '/x'\n", 2, "duration"),
    ("[[paths]]\npath = '/x'\n[[paths]]\npath = 'y'\n", 4, "#2: path must be an absolute path"),
    ("[[paths]]\npath = '/x'\nattributes = ['md5']\n", 3, "unknown attribute 'md5'"),
    ("[[paths]]\npath = '/x'\nexclude = 'a'\n", 3, "exclude"),
    ("[[paths]]\npath = '/x'\n[access]\nprivileged_groups = ['no-such-group-x']\n", 4,
     "no group named"),
    ("[[paths]]\npath = '/x'\ncolour = 1\n", 3, "unknown key 'colour'"),
    ("[gaurd]\n", 1, "unknown key or section 'gaurd'"),
    ("[[paths]]\npath = '/x'\n\n\nnot toml at all\n", 5, "line 5"),
])
def test_bad_policies_name_the_line(text, line, words):
    with pytest.raises(PolicyError) as err:
        parse_policy(text, "p.toml")
    assert err.value.line == line, str(err.value)
    assert words in str(err.value)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_parses_or_raises_policy_error(text):
    try:
        parse_policy(text, "fuzz.toml")
    except PolicyError as exc:
        assert exc.file == "fuzz.toml"


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["hash_workers", "schedule", "state_dir", "x"]),
                       st.one_of(st.integers(-5, 100), st.text(max_size=8), st.booleans(),
                                 st.lists(st.integers(), max_size=3))))
def test_typed_guard_tables_parse_or_raise_policy_error(table):
    import json

    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in table.items())
    try:
        parse_policy(f"[guard]\n{body}\n[[paths]]\npath = '/x'\n")
    except PolicyError as exc:
        assert exc.line >= 1


@given(st.sampled_from(["5", "5s", "2m", "1h", "1d", "0.5h"]))
def test_durations(value):
    seconds = parse_duration(value)
    assert seconds is not None and seconds > 0


@given(st.lists(st.text(alphabet="abc*?/.", min_size=1, max_size=6), max_size=4),
       st.text(alphabet="abc./", min_size=1, max_size=12))
def test_exclusion_is_a_pure_function_of_pattern_and_path(patterns, name):
    rule = PathRule(path="/t", attributes=("size",), exclude=tuple(patterns))
    path = "/t/" + name.strip("/")
    assert rule.excluded(path) == rule.excluded(path)
    if not patterns:
        assert not rule.excluded(path)
