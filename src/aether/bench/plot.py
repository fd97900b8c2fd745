"""``aether bench --plot FILE.png``: latency distributions (64 B, unpinned,
one run per mechanism: the run whose p50 was the median) and throughput bars."""

from __future__ import annotations

from .suite import Report


def write_plot(report: Report, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lat, ax_bw) = plt.subplots(1, 2, figsize=(15, 6.5),
                                        gridspec_kw={"width_ratios": [3, 2]})
    series = [(mech, [s / 1000 for s in samples])
              for (mech, size, pinning), samples in report.samples.items()
              if size == 64 and pinning == "unpinned"]
    if series:
        series.sort(key=lambda item: sorted(item[1])[len(item[1]) // 2])
        ax_lat.boxplot([s for _, s in series], orientation="horizontal", whis=(1, 99),
                       showfliers=False, tick_labels=[m for m, _ in series])
        ax_lat.set_xscale("log")
        ax_lat.set_xlabel("round trip µs (log scale; box p25-p75, whiskers p1-p99)")
        ax_lat.set_title("64 B echo round trip, unpinned")
        ax_lat.grid(True, axis="x", which="both", alpha=0.3)
    else:
        ax_lat.text(0.5, 0.5, "no latency samples", ha="center")

    rows = [r for r in report.results
            if r["kind"] == "throughput" and r["clients"] == 1 and "gbps" in r]
    sizes = sorted({r["payload_bytes"] for r in rows})
    mechs = sorted({r["mechanism"] for r in rows})
    width = 0.8 / max(1, len(sizes))
    for i, size in enumerate(sizes):
        values = [next((r["gbps"] for r in rows if r["mechanism"] == m
                        and r["payload_bytes"] == size), 0.0) for m in mechs]
        ax_bw.barh([j + i * width for j in range(len(mechs))], values, height=width,
                   label=f"{size // (1 << 20)} MiB")
    ax_bw.set_yticks([j + width * (len(sizes) - 1) / 2 for j in range(len(mechs))], mechs)
    ax_bw.set_xlabel("GB/s (10^9 B/s), one-way transfer + ack")
    ax_bw.set_title("bulk throughput (skipped mechanisms not drawn)")
    ax_bw.legend()
    ax_bw.grid(True, axis="x", alpha=0.3)
    fig.suptitle(f"aether bench, {report.machine.get('date', '')}, "
                 f"{report.machine.get('cpus_usable')} CPUs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
