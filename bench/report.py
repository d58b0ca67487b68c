#!/usr/bin/env python3
"""RESULTS.md and plot.png from a `bench/run.py` results folder.

.venv-bench/bin/python bench/report.py bench/results/<UTC>
"""

import json
import sys
from pathlib import Path

from targets import fmt, get, table


def markdown(results: dict) -> str:
    systems = results["systems"]
    peer, relay = systems.get("peer", {}), systems.get("relay", {})
    meta = get(relay, "meta") or get(peer, "meta") or {}
    lines = [
        "# Benchmark: our relay against the FastAPI peer",
        "",
        f"Run {meta.get('when_utc', '?')} on {meta.get('cpu', '?')}, "
        f"{meta.get('cores', '?')} cores, Python {meta.get('python', '?')}, "
        f"kernel {meta.get('kernel', '?')}; relay pinned to core 0, fake provider and "
        "load generator to core 1.",
        "",
        f"Command: `{results.get('command', 'bench/run.py')}`",
        "",
    ]

    def both(path, digits=1, unit=""):
        return fmt(get(peer, path), digits, unit), fmt(get(relay, path), digits, unit)

    def megabytes(data, path):
        kb = get(data, path)
        return fmt(kb / 1024 if kb else None, 1, " MB")

    lines += table(results)
    g = results.get("g_cross_process") or {}

    if "a_overhead" in relay or "a_overhead" in peer:
        lines += [
            "## (a) Time to first token, sequential (50 requests after 5 warm-ups)",
            "",
            "| ms | peer p50 | peer p99 | relay p50 | relay p99 |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for label, key in (
            ("through the relay", "relay_ttft_ms"),
            ("SDK straight to the provider", "direct_sdk_ttft_ms"),
            ("overhead", "overhead_ms"),
        ):
            p50 = both(f"a_overhead.{key}_p50", 2)
            p99 = both(f"a_overhead.{key}_p99", 2)
            lines.append(f"| {label} | {p50[0]} | {p99[0]} | {p50[1]} | {p99[1]} |")
        lines.append("")

    if "a2_burst_ttft" in relay or "a2_burst_ttft" in peer:
        a2 = get(relay, "a2_burst_ttft") or get(peer, "a2_burst_ttft")
        p50 = both("a2_burst_ttft.ttft_ms_p50", 1, " ms")
        p99 = both("a2_burst_ttft.ttft_ms_p99", 1, " ms")
        lines += [
            f"## (a') Time to first token of a {fmt(a2.get('tokens'), 0)}-token answer "
            f"the provider sends at once (sequential, {a2.get('requests')} requests "
            "after 5 warm-ups)",
            "",
            "| | peer | relay |",
            "| --- | ---: | ---: |",
            f"| TTFT p50 | {p50[0]} | {p50[1]} |",
            f"| TTFT p99 | {p99[0]} | {p99[1]} |",
            "",
        ]

    if "b_throughput" in relay or "b_throughput" in peer:
        tps = both("b_throughput.relay_tokens_per_s", 0)
        cpu = both("b_throughput.relay_cpu_us_per_token", 1)
        lines += [
            "## (b) One stream of 5,000 tokens, as fast as the provider sends",
            "",
            "| | peer | relay |",
            "| --- | ---: | ---: |",
            f"| tokens/s | {tps[0]} | {tps[1]} |",
            f"| relay CPU per token (µs) | {cpu[0]} | {cpu[1]} |",
            "",
        ]

    levels = sorted(
        set(get(peer, "c_concurrency", {})) | set(get(relay, "c_concurrency", {})),
        key=int,
    )
    if levels:
        lines += [
            "## (c) N streams of 200 tokens at 20 ms, starts spread over 2 s",
            "",
            "| N | system | completed | TTFT p50 | TTFT p99 | gap p50 | gap p99 "
            "| slowest 1 % stream, tok/s (50) | CPU µs/token | peak RSS |",
            "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for level in levels:
            for name, data in (("peer", peer), ("relay", relay)):
                row = get(data, f"c_concurrency.{level}")
                if not row:
                    continue
                tokens = int(level) * 200
                cpu = row.get("server_cpu_s")
                lines.append(
                    f"| {level} | {name} | {fmt(row.get('completed_pct'), 0, ' %')} "
                    f"| {fmt(row.get('ttft_ms_p50'), 0, ' ms')} "
                    f"| {fmt(row.get('ttft_ms_p99'), 0, ' ms')} "
                    f"| {fmt(row.get('gap_ms_p50'), 1, ' ms')} "
                    f"| {fmt(row.get('gap_ms_p99'), 1, ' ms')} "
                    f"| {fmt(row.get('slow_stream_tokens_per_s'), 1)} "
                    f"| {fmt(cpu / tokens * 1e6 if cpu else None, 0)} "
                    f"| {fmt((row.get('server_rss_peak_kb') or 0) / 1024, 1, ' MB')} |"
                )
        lines.append("")

    if "o_open_streams" in relay or "o_open_streams" in peer:
        lines += [
            "## (d) Memory",
            "",
            "| | peer | relay |",
            "| --- | ---: | ---: |",
            "| RSS per open stream ({} open, upstream open) | {} | {} |".format(
                get(relay, "o_open_streams.streams")
                or get(peer, "o_open_streams.streams"),
                *both("o_open_streams.rss_per_stream_kb", 1, " KB"),
            ),
            "| RSS growth, 1,000,000-character answer | {} | {} |".format(
                *both("d_memory.1M_chars.rss_growth_kb", 0, " KB")
            ),
            "| RSS growth, 1,000-character answer | {} | {} |".format(
                *both("d_memory.1k_chars.rss_growth_kb", 0, " KB")
            ),
            "| RSS per extra viewer ({} streams, each watched a second time) | – | {} |".format(
                get(results, "v_extra_viewers.streams"),
                fmt(get(results, "v_extra_viewers.rss_per_extra_viewer_kb"), 1, " KB"),
            ),
            "",
        ]

    if "r_start_burst" in relay or "r_start_burst" in peer:
        r = get(relay, "r_start_burst") or get(peer, "r_start_burst")
        lines += [
            f"## (r) A burst of starts: {r.get('streams')} streams started within "
            f"{fmt(r.get('ramp_s'))} s, each {r.get('tokens')} tokens at "
            f"{fmt(r.get('delay_ms'), 0)} ms",
            "",
            "Our relay with its token, its row and its limits on (set high enough to "
            "refuse no start).",
            "",
            "| | peer | relay |",
            "| --- | ---: | ---: |",
            "| completed | {} | {} |".format(
                *both("r_start_burst.completed_pct", 0, " %")
            ),
            "| TTFT p50 | {} | {} |".format(
                *both("r_start_burst.ttft_ms_p50", 0, " ms")
            ),
            "| TTFT p99 | {} | {} |".format(
                *both("r_start_burst.ttft_ms_p99", 0, " ms")
            ),
            "| peak RSS | {} | {} |".format(
                *(
                    megabytes(data, "r_start_burst.rss_peak_kb")
                    for data in (peer, relay)
                )
            ),
            "| RSS per stream while they run | {} | {} |".format(
                *both("r_start_burst.rss_per_stream_kb", 1, " KB")
            ),
            "",
        ]

    s_viewers = results.get("s_stalled_viewers")
    if s_viewers:
        lines += [
            f"## (s) {s_viewers.get('viewers')} viewers that never read an answer of "
            f"{fmt(s_viewers.get('answer_chars'), 0)} characters (our relay)",
            "",
            "| | |",
            "| --- | ---: |",
            f"| RSS before the stream | {fmt(s_viewers.get('rss_before_kb'), 0, ' KB')} |",
            f"| with one stalled viewer | {fmt(s_viewers.get('rss_one_stalled_kb'), 0, ' KB')} |",
            f"| with all of them | {fmt(s_viewers.get('rss_stalled_kb'), 0, ' KB')} |",
            f"| after they closed | {fmt(s_viewers.get('rss_after_close_kb'), 0, ' KB')} |",
            f"| with them all, joined once the answer was complete | "
            f"{fmt(s_viewers.get('rss_late_stalled_kb'), 0, ' KB')} |",
            "| per stalled viewer beyond the shared text | "
            f"{fmt(s_viewers.get('rss_per_stalled_viewer_beyond_text_kb'), 1, ' KB')} |",
            "| the same, joined once the answer was complete | "
            f"{fmt(s_viewers.get('rss_per_late_stalled_viewer_beyond_text_kb'), 1, ' KB')}"
            " |",
            "",
        ]

    if "e_disconnect" in relay or "e_disconnect" in peer:
        lines += [
            "## (e) Client hangs up after 10 of 500 tokens (20 streams)",
            "",
            "| | peer | relay |",
            "| --- | ---: | ---: |",
            "| upstream closed by the relay, per run | {} | {} |".format(
                *both("e_disconnect.upstream_closed_by_relay")
            ),
            "| upstream ran to completion, per run | {} | {} |".format(
                *both("e_disconnect.upstream_ran_to_completion")
            ),
            "| tokens the provider sent, median | {} | {} |".format(
                *both("e_disconnect.upstream_tokens_sent_median", 0)
            ),
            "",
            "Our relay keeps generating for `STREAM_ORPHAN_GRACE_SECONDS` (1 s here, 30 s "
            "by default) after the last viewer leaves, so a reconnect resumes the answer.",
            "",
        ]

    if "f_fidelity" in relay or "f_fidelity" in peer:

        def fidelity(data, key):
            check = get(data, f"f_fidelity.{key}") or {}
            if not check:
                return "–"
            checked = check.get("checked", 0)
            return f"{checked - check.get('mismatched', 0)}/{checked}"

        lines += [
            "## (f) 500 tricky tokens, 5 streams: streams whose text matched",
            "",
            "| | peer | relay |",
            "| --- | ---: | ---: |",
            f"| byte-exact | {fidelity(peer, 'exact')} | {fidelity(relay, 'exact')} |",
            f"| CR and CRLF as LF | {fidelity(peer, 'normalized_cr')} "
            f"| {fidelity(relay, 'normalized_cr')} |",
            "",
        ]

    if g:
        viewer = g.get("viewer", {})
        lines += [
            "## (g) Streams on one process watched from a second through Redis",
            "",
            f"{g.get('streams')} streams of {g.get('tokens_per_stream')} tokens at 20 ms, "
            "started on process A, read on process B.",
            "",
            "| | |",
            "| --- | ---: |",
            f"| completed on B | {viewer.get('streams_ok')} of {g.get('streams')} |",
            f"| gap p50 / p99 on B | {fmt(get(viewer, 'gap_ms.p50'))} / "
            f"{fmt(get(viewer, 'gap_ms.p99'))} ms |",
            f"| Redis PUBLISH per token | {g.get('publish_per_token')} |",
            f"| Redis commands | {g.get('redis_calls')} |",
            f"| Redis CPU per token | {g.get('redis_cpu_us_per_token')} µs |",
            "",
        ]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, style in (("peer", "o--"), ("relay", "s-")):
        rows = get(results["systems"].get(name, {}), "c_concurrency", {})
        levels = sorted(rows, key=int)
        if not levels:
            continue
        x = [int(level) for level in levels]
        for axis, key, title in (
            (axes[0], "ttft_ms", "time to first token"),
            (axes[1], "gap_ms", "gap between tokens"),
        ):
            for percentile, alpha in (("p50", 0.5), ("p99", 1.0)):
                y = [
                    rows[level].get(f"{key}_{percentile}") or float("nan")
                    for level in levels
                ]
                axis.plot(x, y, style, alpha=alpha, label=f"{name} {percentile}")
            axis.set_title(title)
    for axis in axes:
        axis.set_xlabel("concurrent streams (200 tokens at 50 tok/s each)")
        axis.set_ylabel("ms")
        axis.set_yscale("log")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    axes[1].axhline(100, color="grey", linewidth=0.8)
    axes[0].axhline(500, color="grey", linewidth=0.8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    folder = Path(sys.argv[1])
    results = json.loads((folder / "results.json").read_text())
    text = markdown(results)
    (folder / "RESULTS.md").write_text(text)
    if any(get(data, "c_concurrency") for data in results["systems"].values()):
        plot(results, folder / "plot.png")
    print(text)


if __name__ == "__main__":
    main()
