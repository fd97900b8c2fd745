"""The issue's goals, checked against figures measured in the same run.

Every check compares unpinned rows (the headline placement) at 64 B unless
it says otherwise, and reports its ratio whether it is met or not; a check
whose figures are missing is ``skipped`` with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MET, NOT_MET, SKIPPED = "met", "not met", "skipped"


class _Figures:
    def __init__(self, results: Sequence[dict[str, Any]]) -> None:
        self.results = results

    def find(self, mechanism: str, kind: str, size: int, clients: int = 1,
             pinning: str = "unpinned") -> dict[str, Any] | None:
        for r in self.results:
            if (r["mechanism"], r["kind"], r["payload_bytes"], r["clients"], r["pinning"]) == (
                    mechanism, kind, size, clients, pinning):
                return r
        return None

    def value(self, mechanism: str, kind: str, size: int, key: str,
              clients: int = 1) -> tuple[float | None, str]:
        row = self.find(mechanism, kind, size, clients)
        if row is None:
            return None, f"{mechanism} was not measured"
        if "skipped" in row:
            return None, f"{mechanism} skipped: {row['skipped']}"
        if key not in row:
            return None, f"{mechanism} has no {key}"
        return float(row[key]), ""


def _check(goal: str, measured: float | None, target: float | None, *, reason: str,
           higher_is_better: bool, unit: str = "x") -> dict[str, Any]:
    entry: dict[str, Any] = {"goal": goal, "target": target, "unit": unit}
    if measured is None or target is None:
        entry.update(verdict=SKIPPED, reason=reason)
        return entry
    ok = measured >= target if higher_is_better else measured <= target
    entry.update(measured=round(measured, 3), verdict=MET if ok else NOT_MET)
    return entry


def _ratio(f: _Figures, a: str, b: str, kind: str, size: int, key: str,
           clients: int = 1) -> tuple[float | None, str]:
    va, ra = f.value(a, kind, size, key, clients)
    vb, rb = f.value(b, kind, size, key, clients)
    if va is None or vb is None or vb == 0:
        return None, ra or rb or f"{b} is zero"
    return va / vb, ""


def evaluate(results: Sequence[dict[str, Any]], mechanisms: Sequence[Any],
             cores: int) -> list[dict[str, Any]]:
    f = _Figures(results)
    out: list[dict[str, Any]] = []
    lat = "latency"

    r, why = _ratio(f, "aether.mapping.spin", "floor.spin", lat, 64, "p50_us")
    out.append(_check("mapping spin p50 <= 3x floor.spin (64 B)", r, 3.0, reason=why,
                      higher_is_better=False))
    r, why = _ratio(f, "iceoryx2.poll", "aether.mapping.spin", lat, 64, "p50_us")
    out.append(_check("mapping spin >= 2x faster than iceoryx2.poll at p50 (64 B)", r, 2.0,
                      reason=why, higher_is_better=True))
    r, why = _ratio(f, "aether.mapping.blocking", "floor.eventfd", lat, 64, "p50_us")
    out.append(_check("mapping blocking p50 <= 1.3x floor.eventfd (64 B)", r, 1.3, reason=why,
                      higher_is_better=False))
    for peer in (m.id for m in mechanisms if m.blocking_peer):
        for key in ("p50_us", "p99_us"):
            r, why = _ratio(f, peer, "aether.mapping.blocking", lat, 64, key)
            out.append(_check(f"mapping blocking faster than {peer} at {key[:3]} (64 B)", r, 1.0,
                              reason=why, higher_is_better=True))
    # "faster" means strictly: a ratio of exactly 1.0 is not a win
    for entry in out:
        if entry["goal"].startswith("mapping blocking faster") and entry.get("measured") == 1.0:
            entry["verdict"] = NOT_MET
    r, why = _ratio(f, "aether.memory", "raw.seqpacket", lat, 64, "p50_us")
    out.append(_check("memory p50 <= 2x raw.seqpacket (64 B)", r, 2.0, reason=why,
                      higher_is_better=False))
    r, why = _ratio(f, "dbus-fast", "aether.memory", lat, 64, "p50_us")
    out.append(_check("memory >= 3x faster than dbus-fast at p50 (64 B)", r, 3.0, reason=why,
                      higher_is_better=True))
    big = 64 * 1024 * 1024
    r, why = _ratio(f, "aether.mapping.spin", "floor.memcpy", "throughput", big, "gbps")
    out.append(_check("64 MiB mapping >= 0.7x floor.memcpy", r, 0.7, reason=why,
                      higher_is_better=True))
    unchecked, why = f.value("aether.mapping.spin", "throughput", big, "gbps_payload_unchecked")
    memcpy, why_memcpy = f.value("floor.memcpy", "throughput", big, "gbps")
    r = unchecked / memcpy if unchecked is not None and memcpy else None
    why = why or why_memcpy
    out.append(_check("64 MiB mapping, loan with checksum=False (header crc only) "
                      ">= 0.7x floor.memcpy", r, 0.7, reason=why, higher_is_better=True))
    r, why = _ratio(f, "aether.memory", "floor.memcpy", "throughput", big, "gbps")
    out.append(_check("64 MiB memory >= 0.3x floor.memcpy", r, 0.3, reason=why,
                      higher_is_better=True))
    for mech in (m.id for m in mechanisms if m.concurrency and m.id.startswith("aether.")):
        single, why1 = f.value(mech, "throughput", 64, "calls_per_s", 1)
        many, why16 = f.value(mech, "throughput", 64, "calls_per_s", 16)
        target = 0.8 * 16 * single / cores if single is not None else None
        entry = _check(f"{mech}: 16 clients >= 0.8 x 16 x single / {cores} cores (calls/s)",
                       many, target, reason=why1 or why16, higher_is_better=True,
                       unit="calls/s")
        if target is not None:
            entry["target"] = round(target)
        out.append(entry)
    return out
