"""Small statistics helpers for the benchmarks (no numpy needed)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of already sorted values, nearest-rank."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def summarize_ns(samples_ns: Sequence[int]) -> dict[str, float]:
    """p50/p99/mean in microseconds and calls per second of round-trip samples.

    calls/s is the number of samples over their summed time (the loop's own
    overhead between samples is left out, ~0.1 µs a call)."""
    if not samples_ns:
        raise ValueError("no samples")
    values = sorted(samples_ns)
    total = sum(values)
    return {
        "p50_us": percentile(values, 50) / 1000,
        "p99_us": percentile(values, 99) / 1000,
        "mean_us": total / len(values) / 1000,
        "calls_per_s": len(values) / (total / 1e9) if total else float("nan"),
    }


def median_of(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    """Median over repeated runs of each figure (median of medians for p50)."""
    if not runs:
        raise ValueError("no runs")
    keys = runs[0].keys()
    return {k: statistics.median(r[k] for r in runs) for k in keys}
