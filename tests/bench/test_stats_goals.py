"""The harness's arithmetic: percentiles, medians of runs, goal verdicts."""

from __future__ import annotations

import statistics

import pytest
from hypothesis import given, strategies as st

from aether.bench import goals
from aether.bench.mechanisms import all_mechanisms
from aether.bench.stats import median_of, percentile, summarize_ns

samples = st.lists(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=300)


@given(samples)
def test_summary_is_ordered_and_consistent(values: list[int]) -> None:
    s = summarize_ns(values)
    assert min(values) / 1000 <= s["p50_us"] <= s["p99_us"] <= max(values) / 1000
    assert s["mean_us"] == pytest.approx(statistics.fmean(values) / 1000)
    assert s["calls_per_s"] == pytest.approx(len(values) / (sum(values) / 1e9))


def test_percentile_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 51  # round(0.5 * 99) = 50 -> the 51st value
    assert percentile(values, 99) == 99
    assert percentile(values, 0) == 1 and percentile(values, 100) == 100


def test_median_of_runs_is_per_figure() -> None:
    runs = [{"p50_us": 3.0, "p99_us": 9.0}, {"p50_us": 1.0, "p99_us": 30.0},
            {"p50_us": 2.0, "p99_us": 10.0}]
    assert median_of(runs) == {"p50_us": 2.0, "p99_us": 10.0}


def test_empty_input_is_an_error_not_a_zero() -> None:
    with pytest.raises(ValueError):
        summarize_ns([])
    with pytest.raises(ValueError):
        median_of([])


def _lat(mech: str, p50: float, p99: float, size: int = 64) -> dict:
    return {"mechanism": mech, "kind": "latency", "payload_bytes": size, "pinning": "unpinned",
            "clients": 1, "p50_us": p50, "p99_us": p99, "mean_us": p50, "calls_per_s": 1e6 / p50}


def _verdicts(results: list[dict], cores: int = 2) -> dict[str, dict]:
    return {g["goal"]: g for g in goals.evaluate(results, all_mechanisms(), cores)}


def test_goal_verdicts_met_not_met_and_skipped() -> None:
    results = [
        _lat("floor.spin", 1.0, 2.0), _lat("iceoryx2.poll", 6.0, 9.0),
        _lat("aether.mapping.spin", 2.9, 5.0),
        _lat("floor.eventfd", 10.0, 20.0), _lat("aether.mapping.blocking", 14.0, 25.0),
        _lat("raw.seqpacket", 12.0, 30.0), _lat("dbus-fast", 150.0, 300.0),
        _lat("aether.memory", 25.0, 40.0),
        {"mechanism": "raw.stream", "kind": "latency", "payload_bytes": 64,
         "pinning": "unpinned", "clients": 1, "skipped": "failed: boom"},
    ]
    v = _verdicts(results)
    assert v["mapping spin p50 <= 3x floor.spin (64 B)"]["verdict"] == "met"
    assert v["mapping spin >= 2x faster than iceoryx2.poll at p50 (64 B)"]["verdict"] == "met"
    assert v["mapping spin >= 2x faster than iceoryx2.poll at p50 (64 B)"]["measured"] == \
        pytest.approx(6.0 / 2.9, abs=1e-3)
    # 14 / 10 = 1.4 > 1.3
    assert v["mapping blocking p50 <= 1.3x floor.eventfd (64 B)"]["verdict"] == "not met"
    # 12 / 14 < 1: seqpacket is faster at p50, slower at p99
    assert v["mapping blocking faster than raw.seqpacket at p50 (64 B)"]["verdict"] == "not met"
    assert v["mapping blocking faster than raw.seqpacket at p99 (64 B)"]["verdict"] == "met"
    skipped = v["mapping blocking faster than raw.stream at p50 (64 B)"]
    assert skipped["verdict"] == "skipped" and "boom" in skipped["reason"]
    assert "measured" not in skipped
    assert v["memory p50 <= 2x raw.seqpacket (64 B)"]["verdict"] == "not met"  # 25/12
    assert v["memory >= 3x faster than dbus-fast at p50 (64 B)"]["verdict"] == "met"  # 6x
    assert v["64 MiB memory >= 0.3x floor.memcpy"]["verdict"] == "skipped"


def test_equal_is_not_faster() -> None:
    v = _verdicts([_lat("aether.mapping.blocking", 10.0, 20.0), _lat("pyzmq", 10.0, 20.0)])
    assert v["mapping blocking faster than pyzmq at p50 (64 B)"]["verdict"] == "not met"


def test_concurrency_goal_uses_cores() -> None:
    rows = [{"mechanism": "aether.memory", "kind": "throughput", "payload_bytes": 64,
             "pinning": "unpinned", "clients": n, "calls_per_s": rate}
            for n, rate in ((1, 1000), (16, 6500))]
    goal = "aether.memory: 16 clients >= 0.8 x 16 x single / 2 cores (calls/s)"
    v = _verdicts(rows, cores=2)[goal]
    assert v["target"] == 6400 and v["verdict"] == "met"
    v4 = _verdicts(rows, cores=1)
    assert v4["aether.memory: 16 clients >= 0.8 x 16 x single / 1 cores (calls/s)"][
        "verdict"] == "not met"
