#!/usr/bin/env python3
"""SSE load generator: N concurrent streams, WHATWG-correct parsing, one JSON line out.

    loadgen.py URL [-c CONCURRENCY] [-n REQUESTS] [--timeout S] [--pid PID] ...

Each stream is an HTTP request (GET by default) whose text/event-stream body is parsed as the
WHATWG HTML spec says (lines end in CRLF, LF or CR; `data:` lines joined with LF; one space after
the colon removed; comments ignored; BOM stripped; `id` with NUL ignored). Events named
--token-event (default "token") count as tokens, --done-event ends a stream successfully,
--error-event marks it failed.

--mode openai / anthropic instead POSTs a chat request straight to a provider (e.g. the fake one)
and counts its content chunks as tokens, to measure a provider without a relay in between.

Reported (one JSON line on stdout): streams ok/failed (with reasons), time to response headers and
to first token p50/p95/p99, tokens, aggregate tokens/s, inter-token gaps p50/p99/max pooled over
all streams, per-stream duration, wall time, the loadgen's own CPU time and event-loop lag (to show
when the client is the bottleneck), and, with --pid, the server's RSS (start/peak/end, sampled
every --rss-interval s) and CPU seconds used during the run.

Loopback only: the URL's host must be 127.0.0.1, localhost or ::1. Everything is bounded by
--timeout (whole run) and --stream-timeout (each stream).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import sys
import time
import urllib.parse

import aiohttp

LINE_RE = re.compile(rb"\r\n|\r|\n")
BOM = b"\xef\xbb\xbf"


class SSEParser:
    """Incremental WHATWG event-stream parser over bytes. feed() returns completed events."""

    __slots__ = (
        "buf",
        "data",
        "event",
        "last_id",
        "retry",
        "started",
        "skip_lf",
        "comments",
    )

    def __init__(self):
        self.buf = b""
        self.data: list[bytes] | None = None
        self.event = b""
        self.last_id = ""
        self.retry: int | None = None
        self.started = False
        self.skip_lf = False
        self.comments = 0

    def feed(self, chunk: bytes) -> list[tuple[str, str, str]]:
        if not chunk:
            return []
        if self.skip_lf:
            self.skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buf = self.buf + chunk if self.buf else chunk
        if not self.started:
            if len(buf) < 3 and BOM.startswith(buf):
                self.buf = buf
                return []
            self.started = True
            if buf.startswith(BOM):
                buf = buf[3:]
        if b"\r" in buf:
            lines = LINE_RE.split(buf)
            if buf.endswith(b"\r"):
                self.skip_lf = (
                    True  # a CR ending this chunk may be the first half of CRLF
                )
        else:
            lines = buf.split(b"\n")
        self.buf = lines.pop()
        out = []
        for line in lines:
            if not line:
                if self.data is not None:
                    out.append(
                        (
                            (self.event or b"message").decode("utf-8", "replace"),
                            b"\n".join(self.data).decode("utf-8", "replace"),
                            self.last_id,
                        )
                    )
                self.data = None
                self.event = b""
                continue
            if line[0] == 58:  # ':' comment
                self.comments += 1
                continue
            i = line.find(b":")
            if i < 0:
                field, value = line, b""
            else:
                field, value = line[:i], line[i + 1 :]
                if value[:1] == b" ":
                    value = value[1:]
            if field == b"data":
                if self.data is None:
                    self.data = [value]
                else:
                    self.data.append(value)
            elif field == b"event":
                self.event = value
            elif field == b"id":
                if b"\x00" not in value:
                    self.last_id = value.decode("utf-8", "replace")
            elif field == b"retry":
                if value.isdigit():
                    self.retry = int(value)
        return out


def pct(sorted_vals: list[float], p: float) -> float | None:
    """Percentile with linear interpolation (numpy's default) on a sorted list."""
    if not sorted_vals:
        return None
    k = (len(sorted_vals) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(sorted_vals) - 1)
    return sorted_vals[f] + (sorted_vals[c] - sorted_vals[f]) * (k - f)


def summary(vals: list[float], scale: float = 1000.0, ps=(50, 95, 99)) -> dict:
    v = sorted(vals)
    out = {"n": len(v)}
    for p in ps:
        x = pct(v, p)
        out[f"p{p}"] = None if x is None else round(x * scale, 3)
    out["max"] = round(v[-1] * scale, 3) if v else None
    out["mean"] = round(sum(v) / len(v) * scale, 3) if v else None
    return out


# --------------------------------------------------------------------------- server sampling


def _read_rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _read_cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _children(pid: int) -> list[int]:
    kids = []
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{t}/children") as f:
                    kids += [int(x) for x in f.read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return kids


def _tree(pids: list[int], with_children: bool) -> list[int]:
    if not with_children:
        return pids
    out, todo = [], list(pids)
    while todo and len(out) < 256:
        p = todo.pop()
        out.append(p)
        todo += _children(p)
    return out


class Sampler:
    def __init__(self, pids: list[int], with_children: bool, interval: float):
        self.pids = pids
        self.with_children = with_children
        self.interval = interval
        self.peak = 0
        self.start_rss = 0
        self.samples = 0
        self.tree = _tree(pids, with_children)
        self.cpu0 = sum(_read_cpu_s(p) for p in self.tree)

    def rss(self) -> int:
        return sum(_read_rss_kb(p) for p in self.tree)

    async def run(self, stop: asyncio.Event):
        self.start_rss = self.peak = self.rss()
        last_tree = time.monotonic()
        while not stop.is_set():
            r = self.rss()
            self.samples += 1
            if r > self.peak:
                self.peak = r
            if self.with_children and time.monotonic() - last_tree > 1.0:
                self.tree = _tree(self.pids, True)
                last_tree = time.monotonic()
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                pass

    def result(self) -> dict:
        end = self.rss()
        return {
            "pids": self.tree,
            "rss_start_kb": self.start_rss,
            "rss_peak_kb": max(self.peak, end),
            "rss_end_kb": end,
            "rss_samples": self.samples,
            "cpu_s": round(sum(_read_cpu_s(p) for p in self.tree) - self.cpu0, 3),
        }


async def loop_lag_monitor(stop: asyncio.Event, lags: list[float], interval=0.05):
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(interval)
        lags.append(max(0.0, loop.time() - t - interval))


# --------------------------------------------------------------------------- streams


class StreamResult:
    __slots__ = (
        "ok",
        "reason",
        "t_headers",
        "t_first",
        "tokens",
        "chars",
        "gaps",
        "t_end",
        "text",
        "events",
        "bytes",
        "comments",
        "hungup",
        "status",
    )

    def __init__(self):
        self.ok = False
        self.reason = None
        self.t_headers = None
        self.t_first = None
        self.tokens = 0
        self.chars = 0
        self.gaps: list[float] = []
        self.t_end = None
        self.text: list[str] | None = None
        self.events = 0
        self.bytes = 0
        self.comments = 0
        self.hungup = False
        self.status = None


def provider_body(mode: str, model: str, prompt: str) -> bytes:
    msgs = [{"role": "user", "content": prompt}]
    if mode == "openai":
        return json.dumps(
            {
                "model": model,
                "messages": msgs,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        ).encode()
    return json.dumps(
        {"model": model, "messages": msgs, "stream": True, "max_tokens": 10_000_000}
    ).encode()


async def one_stream(
    session: aiohttp.ClientSession, a, keep_text: bool, url: str | None = None
) -> StreamResult:
    r = StreamResult()
    if keep_text:
        r.text = []
    parser = SSEParser()
    perf = time.perf_counter
    t0 = perf()
    last_tok = None
    tok_ev, done_ev, err_ev = a.token_event, a.done_event, a.error_event
    mode = a.mode
    try:
        if mode == "sse":
            ctx = session.request(
                a.method, url or a.url, data=a.data.encode() if a.data else None
            )
        else:
            ctx = session.post(
                a.url,
                data=provider_body(mode, a.model, a.prompt),
                headers={"Content-Type": "application/json"},
            )
        async with ctx as resp:
            r.t_headers = perf() - t0
            r.status = resp.status
            if resp.status != 200:
                r.reason = f"http_{resp.status}"
                await resp.read()
                return r
            done = False
            async for chunk in resp.content.iter_any():
                now = perf()
                r.bytes += len(chunk)
                for ev, data, _id in parser.feed(chunk):
                    r.events += 1
                    if mode == "sse":
                        is_tok = ev == tok_ev
                        if not is_tok:
                            if ev == done_ev:
                                done = True
                            elif ev == err_ev:
                                r.reason = "error_event"
                                r.t_end = now - t0
                                return r
                            continue
                        text = data
                    elif mode == "openai":
                        if data == "[DONE]":
                            done = True
                            continue
                        if '"delta":{"content":' not in data:
                            if data.startswith('{"error"'):
                                r.reason = "error_event"
                                r.t_end = now - t0
                                return r
                            continue
                        text = json.loads(data)["choices"][0]["delta"]["content"]
                        if not text:
                            continue
                    else:  # anthropic
                        if ev != "content_block_delta":
                            if ev == "message_stop":
                                done = True
                            elif ev == "error":
                                r.reason = "error_event"
                                r.t_end = now - t0
                                return r
                            continue
                        text = json.loads(data)["delta"].get("text", "")
                    r.tokens += 1
                    r.chars += len(text)
                    if keep_text:
                        r.text.append(text)
                    if last_tok is None:
                        r.t_first = now - t0
                    else:
                        r.gaps.append(now - last_tok)
                    last_tok = now
                    if a.disconnect_after and r.tokens >= a.disconnect_after:
                        r.hungup = True
                        r.ok = True
                        r.t_end = now - t0
                        resp.close()  # drop the connection, like a closed tab
                        return r
                if done:
                    break
            r.t_end = perf() - t0
            r.comments = parser.comments
            if done:
                r.ok = True
            else:
                r.reason = "closed_before_done"
    except asyncio.CancelledError:
        r.reason = "timeout"
        raise
    except TimeoutError:
        r.reason = "timeout"
    except aiohttp.ClientError as e:
        r.reason = "client_error:" + type(e).__name__
    except OSError as e:
        r.reason = "os_error:" + type(e).__name__
    if r.t_end is None:
        r.t_end = perf() - t0
    return r


async def run(a) -> dict:
    host = urllib.parse.urlsplit(a.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("loadgen only targets loopback addresses")
    expect = None
    if a.expect_file:
        with open(a.expect_file, encoding="utf-8") as f:
            raw = f.read()
        expect = json.loads(raw) if a.expect_file.endswith(".json") else raw
        if a.expect_normalize_newlines:
            # Plain-text SSE cannot carry CR: the spec's parser turns CRLF and CR into LF.
            expect = expect.replace("\r\n", "\n").replace("\r", "\n")
    keep_text = expect is not None or a.dump_text is not None

    headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    for h in a.header:
        k, _, v = h.partition(":")
        headers[k.strip()] = v.strip()
    cookies = {}
    for c in a.cookie:
        k, _, v = c.partition("=")
        cookies[k.strip()] = v.strip()

    stop = asyncio.Event()
    lags: list[float] = []
    sampler = Sampler(a.pid, a.pid_children, a.rss_interval) if a.pid else None
    bg = [asyncio.create_task(loop_lag_monitor(stop, lags))]
    if sampler:
        bg.append(asyncio.create_task(sampler.run(stop)))
        await asyncio.sleep(0)

    conn = aiohttp.TCPConnector(limit=0, force_close=False, enable_cleanup_closed=False)
    timeout = aiohttp.ClientTimeout(
        total=a.stream_timeout or a.timeout,
        connect=min(30.0, a.timeout),
        sock_read=None,
    )
    results: list[StreamResult] = []
    counter = iter(range(a.requests))
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t_start = time.perf_counter()

    async with aiohttp.ClientSession(
        connector=conn,
        timeout=timeout,
        headers=headers,
        cookies=cookies,
        auto_decompress=True,
    ) as session:

        async def worker(i: int):
            if a.ramp_s > 0:
                await asyncio.sleep(a.ramp_s * i / a.concurrency)
            for n in counter:
                url = a.urls[n % len(a.urls)] if a.urls else None
                results.append(await one_stream(session, a, keep_text, url))

        tasks = [asyncio.create_task(worker(i)) for i in range(a.concurrency)]
        done, pending = await asyncio.wait(tasks, timeout=a.timeout)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
    wall = time.perf_counter() - t_start
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    stop.set()
    await asyncio.gather(*bg, return_exceptions=True)

    ok = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    reasons: dict[str, int] = {}
    for r in failed:
        reasons[r.reason or "unknown"] = reasons.get(r.reason or "unknown", 0) + 1
    never_finished = a.requests - len(results)
    if never_finished:
        reasons["timeout_unfinished"] = never_finished
    all_gaps = [g for r in results for g in r.gaps]
    per_stream_max_gap = [max(r.gaps) for r in results if r.gaps]
    tokens = sum(r.tokens for r in results)
    dur_ok = [r.t_end for r in ok if r.t_end is not None]
    per_stream_rate = [r.tokens / r.t_end for r in ok if r.t_end]
    out = {
        "label": a.label,
        "url": a.url,
        "mode": a.mode,
        "concurrency": a.concurrency,
        "requests": a.requests,
        "streams_ok": len(ok),
        "streams_failed": len(failed) + never_finished,
        "streams_hungup": sum(1 for r in results if r.hungup),
        "failures": reasons,
        "headers_ms": summary(
            [r.t_headers for r in results if r.t_headers is not None]
        ),
        "ttft_ms": summary([r.t_first for r in results if r.t_first is not None]),
        "tokens_total": tokens,
        "chars_total": sum(r.chars for r in results),
        "events_total": sum(r.events for r in results),
        "bytes_total": sum(r.bytes for r in results),
        "comments_total": sum(r.comments for r in results),
        "tokens_per_s": round(tokens / wall, 1) if wall else None,
        "stream_tokens_per_s": summary(per_stream_rate, scale=1.0, ps=(50,)),
        "gap_ms": summary(all_gaps, ps=(50, 99)),
        "stream_max_gap_ms": summary(per_stream_max_gap, ps=(50, 99)),
        "stream_duration_ms": summary(dur_ok, ps=(50, 99)),
        "wall_s": round(wall, 3),
        "loadgen": {
            "cpu_s": round(
                (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime), 3
            ),
            "loop_lag_ms": summary(lags, ps=(50, 99)),
            "max_rss_kb": ru1.ru_maxrss,
        },
    }
    if sampler:
        out["server"] = sampler.result()
    if expect is not None:
        texts = ["".join(r.text) for r in results if r.ok and not r.hungup]
        bad = [t for t in texts if t != expect]
        out["text_check"] = {"checked": len(texts), "mismatched": len(bad)}
        if bad:
            first = bad[0]
            i = next(
                (
                    k
                    for k in range(min(len(first), len(expect)))
                    if first[k] != expect[k]
                ),
                min(len(first), len(expect)),
            )
            out["text_check"]["first_mismatch"] = {
                "at": i,
                "got": first[max(0, i - 10) : i + 20],
                "want": expect[max(0, i - 10) : i + 20],
            }
    if a.dump_text:
        texts = ["".join(r.text) for r in results if r.text is not None]
        with open(a.dump_text, "w", encoding="utf-8") as f:
            json.dump(texts[:10], f, ensure_ascii=False)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("url")
    ap.add_argument("-c", "--concurrency", type=int, default=1)
    ap.add_argument(
        "-n",
        "--requests",
        type=int,
        default=None,
        help="total streams (default: = concurrency)",
    )
    ap.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="whole-run limit, seconds (default 120)",
    )
    ap.add_argument(
        "--stream-timeout",
        type=float,
        default=None,
        help="per-stream limit (default: --timeout)",
    )
    ap.add_argument(
        "--ramp-s",
        type=float,
        default=0.0,
        help="spread stream starts over this many seconds",
    )
    ap.add_argument(
        "-H", "--header", action="append", default=[], help="'Name: value' (repeatable)"
    )
    ap.add_argument(
        "--cookie", action="append", default=[], help="'name=value' (repeatable)"
    )
    ap.add_argument("--method", default="GET")
    ap.add_argument("--data", default=None, help="request body for --method POST")
    ap.add_argument(
        "--mode",
        choices=("sse", "openai", "anthropic"),
        default="sse",
        help="sse: named events from a relay; openai/anthropic: POST straight to a provider",
    )
    ap.add_argument(
        "--model",
        default="gpt-4o-mini",
        help="model (with fake options) for --mode openai/anthropic",
    )
    ap.add_argument(
        "--prompt", default="hello", help="prompt for --mode openai/anthropic"
    )
    ap.add_argument("--token-event", default="token")
    ap.add_argument("--done-event", default="done")
    ap.add_argument("--error-event", default="error")
    ap.add_argument(
        "--disconnect-after", type=int, default=0, help="hang up after this many tokens"
    )
    ap.add_argument(
        "--pid",
        type=int,
        action="append",
        default=[],
        help="server PID to sample (repeatable)",
    )
    ap.add_argument(
        "--pid-children", action="store_true", help="include the PIDs' descendants"
    )
    ap.add_argument("--rss-interval", type=float, default=0.05)
    ap.add_argument(
        "--expect-file",
        help="expected text of every stream (.json: a JSON string; else raw UTF-8)",
    )
    ap.add_argument(
        "--expect-normalize-newlines",
        action="store_true",
        help="compare after turning CRLF and CR in the expected text into LF",
    )
    ap.add_argument(
        "--dump-text",
        help="write the reconstructed texts of up to 10 streams (JSON list)",
    )
    ap.add_argument("--label", default="")
    ap.add_argument(
        "--urls-file", help="one URL per line; stream i reads line i (instead of url)"
    )
    ap.add_argument("--no-uvloop", action="store_true")
    a = ap.parse_args(argv)
    a.urls = open(a.urls_file).read().split() if a.urls_file else []
    if a.requests is None:
        a.requests = a.concurrency
    if (
        a.concurrency < 1
        or a.requests < 1
        or a.concurrency > 20000
        or a.requests > 1_000_000
    ):
        ap.error("concurrency/requests out of range")
    a.concurrency = min(a.concurrency, a.requests)
    if not a.no_uvloop:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
    out = asyncio.run(run(a))
    print(json.dumps(out, ensure_ascii=False), flush=True)
    return 0 if out["streams_failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
