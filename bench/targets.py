"""The targets table of RESULTS.md: every row of issue #17's table, met or not met.

Each row is (target, peer cell, relay cell, verdict); a row whose numbers the run did
not measure says "not measured" rather than disappearing.
"""

C_TOKENS = 200  # (c): tokens per stream
TOKENS_PER_S_PER_STREAM = 50  # (c): tokens at 20 ms
NOT_MEASURED = "not measured"


def get(data, path, default=None):
    for key in path.split("."):
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return data


def fmt(value, digits=1, unit=""):
    if value is None:
        return "–"
    if isinstance(value, list):
        return ", ".join(fmt(item, digits, unit) for item in value)
    if isinstance(value, float):
        value = round(value, digits)
        if digits == 0:
            value = int(value)
    return f"{value:,}{unit}"


def verdict(ok) -> str:
    if ok is None:
        return NOT_MEASURED
    return "met" if ok else "**not met**"


def held(concurrency: dict) -> int:
    """Most streams kept with gap p99 < 100 ms, TTFT p99 < 500 ms and the slowest 1 %
    of streams at >= 95 % of the demanded 50 tokens/s."""
    best = 0
    for level, row in sorted(concurrency.items(), key=lambda kv: int(kv[0])):
        ok = (
            (row.get("completed_pct") or 0) >= 100
            and (row.get("gap_ms_p99") or 1e9) < 100
            and (row.get("ttft_ms_p99") or 1e9) < 500
            and (row.get("slow_stream_tokens_per_s") or 0)
            >= 0.95 * TOKENS_PER_S_PER_STREAM
        )
        if ok:
            best = int(level)
        else:
            break
    return best


def cpu_per_token_us(concurrency: dict, level: int) -> float | None:
    row = concurrency.get(str(level)) or {}
    cpu = row.get("server_cpu_s")
    return cpu / (level * C_TOKENS) * 1e6 if cpu else None


def ratio(numerator, denominator) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def c_row(peer: dict, relay: dict) -> tuple:
    """Streams held per core, and CPU per token, each system at the level it holds (the
    lowest level when it holds none)."""
    target = (
        "(c) 50 tok/s streams held per core: ≥ 4× the peer's streams and CPU per "
        "token, aim 5× (≥ 200 held; 250)"
    )
    peer_c, relay_c = get(peer, "c_concurrency", {}), get(relay, "c_concurrency", {})
    if not peer_c or not relay_c:
        return target, "–", "–", NOT_MEASURED
    lowest = min(int(level) for level in peer_c)
    held_peer, held_relay = held(peer_c), held(relay_c)
    cpu_peer = cpu_per_token_us(peer_c, held_peer or lowest)
    cpu_relay = cpu_per_token_us(relay_c, held_relay or lowest)
    # A peer that holds not even the lowest level holds fewer than it: the ratio
    # against that level is the least the real one can be.
    streams = held_relay / (held_peer or lowest)
    cpu = ratio(cpu_peer, cpu_relay)
    bound = "" if held_peer else "> "
    peer_cell = f"{held_peer or f'< {lowest}'}; CPU per token {fmt(cpu_peer, 0, ' µs')}"
    relay_cell = (
        f"{held_relay} ({bound}{fmt(streams, 1, '×')}); CPU per token "
        f"{fmt(cpu_relay, 0, ' µs')} ({fmt(cpu, 1, '×')})"
    )
    ok = None if cpu is None else streams >= 4 and cpu >= 4
    return target, peer_cell, relay_cell, verdict(ok)


def b_row(peer: dict, relay: dict) -> tuple:
    target = "(b) one stream, tokens/s: ≥ 20× the peer"
    tps_peer = get(peer, "b_throughput.relay_tokens_per_s")
    tps_relay = get(relay, "b_throughput.relay_tokens_per_s")
    times = ratio(tps_relay, tps_peer)
    relay_cell = fmt(tps_relay, 0) + (f" ({fmt(times, 1, '×')})" if times else "")
    ok = None if times is None else times >= 20
    return target, fmt(tps_peer, 0), relay_cell, verdict(ok)


def a_row(peer: dict, relay: dict) -> tuple:
    target = (
        "(a) TTFT overhead p50 over the SDK alone: ≤ the peer's, with auth and the row"
    )
    over_peer = get(peer, "a_overhead.overhead_ms_p50")
    over_relay = get(relay, "a_overhead.overhead_ms_p50")
    ok = None if None in (over_peer, over_relay) else over_relay <= over_peer
    return target, fmt(over_peer, 2, " ms"), fmt(over_relay, 2, " ms"), verdict(ok)


def a2_row(peer: dict, relay: dict) -> tuple:
    target = "(a') TTFT p50 of a 5,000-token answer that arrives at once: ≤ the peer's + 2 ms"

    def cell(data):
        p50 = get(data, "a2_burst_ttft.ttft_ms_p50")
        p99 = get(data, "a2_burst_ttft.ttft_ms_p99")
        return (
            "–" if p50 is None else f"{fmt(p50, 1, ' ms')} (p99 {fmt(p99, 1, ' ms')})"
        )

    ttft_peer = get(peer, "a2_burst_ttft.ttft_ms_p50")
    ttft_relay = get(relay, "a2_burst_ttft.ttft_ms_p50")
    ok = None if None in (ttft_peer, ttft_relay) else ttft_relay <= ttft_peer + 2
    return target, cell(peer), cell(relay), verdict(ok)


def d_rows(peer: dict, relay: dict, results: dict) -> list[tuple]:
    open_relay = get(relay, "o_open_streams.rss_per_stream_kb")
    big_relay = get(relay, "d_memory.1M_chars.rss_growth_kb")
    viewer = get(results, "v_extra_viewers.rss_per_extra_viewer_kb")
    stalled = get(results, "s_stalled_viewers.rss_per_stalled_viewer_beyond_text_kb")
    return [
        (
            "(d) RSS per open stream: ≤ 64 KB",
            fmt(get(peer, "o_open_streams.rss_per_stream_kb"), 1, " KB"),
            fmt(open_relay, 1, " KB"),
            verdict(None if open_relay is None else open_relay <= 64),
        ),
        (
            "(d) a 1,000,000-character answer adds: < 2 MB",
            fmt(get(peer, "d_memory.1M_chars.rss_growth_kb"), 0, " KB"),
            fmt(big_relay, 0, " KB"),
            verdict(None if big_relay is None else big_relay < 2048),
        ),
        (
            "(v) RSS per extra viewer of a stream: ≤ 32 KB",
            "–",
            fmt(viewer, 1, " KB"),
            verdict(None if viewer is None else viewer <= 32),
        ),
        (
            "(s) a viewer that stops reading holds: ≤ 64 KB beyond the shared text",
            "–",
            fmt(stalled, 1, " KB"),
            verdict(None if stalled is None else stalled <= 64),
        ),
    ]


def r_row(peer: dict, relay: dict) -> tuple:
    target = (
        "(r) a burst of starts, 300 streams within 2 s: TTFT p99 ≤ the peer's + 50 ms, "
        "with auth, limits and the row"
    )

    def cell(data):
        r = get(data, "r_start_burst")
        if not r:
            return "–"
        return (
            f"TTFT p99 {fmt(r.get('ttft_ms_p99'), 0, ' ms')} (p50 "
            f"{fmt(r.get('ttft_ms_p50'), 0, ' ms')}), {fmt(r.get('completed_pct'), 0, ' %')}"
            f" completed, RSS per stream {fmt(r.get('rss_per_stream_kb'), 1, ' KB')}"
        )

    p99_peer = get(peer, "r_start_burst.ttft_ms_p99")
    p99_relay = get(relay, "r_start_burst.ttft_ms_p99")
    done = get(relay, "r_start_burst.completed_pct")
    ok = None
    if None not in (p99_peer, p99_relay):
        ok = p99_relay <= p99_peer + 50 and (done or 0) >= 100
    return target, cell(peer), cell(relay), verdict(ok)


def g_row(results: dict) -> tuple | None:
    g = results.get("g_cross_process")
    if not g:
        return None
    gap = get(g, "viewer.gap_ms.p99")
    ok = get(g, "viewer.streams_ok") == g.get("streams") and gap is not None
    return (
        "(g) every token on the second process, gap p99 < 100 ms",
        "–",
        f"{get(g, 'viewer.streams_ok')}/{g.get('streams')} streams, gap p99 "
        f"{fmt(gap, 1, ' ms')}",
        verdict(ok and gap < 100),
    )


def table(results: dict) -> list[str]:
    systems = results.get("systems", {})
    peer, relay = systems.get("peer", {}), systems.get("relay", {})
    rows = [c_row(peer, relay), b_row(peer, relay), a_row(peer, relay)]
    rows += [a2_row(peer, relay), *d_rows(peer, relay, results), r_row(peer, relay)]
    rows += [row for row in (g_row(results),) if row]
    lines = [
        "## Targets",
        "",
        "| target | peer | relay | verdict |",
        "| --- | ---: | ---: | --- |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]
