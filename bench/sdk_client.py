#!/usr/bin/env python3
"""Stream straight from a provider with the official SDK (no relay): the baseline for relay overhead.

    sdk_client.py --base-url http://127.0.0.1:8900/v1 --model 'gpt-4o-mini?tokens=20' -n 50 --warmup 5

Runs -n sequential streams (after --warmup unmeasured ones) with AsyncOpenAI (or AsyncAnthropic with
--api anthropic) and prints one JSON line: time to first content token p50/p95/p99, stream duration,
tokens/s per stream, and this process's CPU time per token. Loopback only; bounded by --timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loadgen import summary  # noqa: E402


async def run(a):
    if urllib.parse.urlsplit(a.base_url).hostname not in (
        "127.0.0.1",
        "localhost",
        "::1",
    ):
        raise SystemExit("loopback only")
    msgs = [{"role": "user", "content": a.prompt}]
    if a.api == "openai" and a.raw:
        import openai

        client = openai.AsyncOpenAI(base_url=a.base_url, api_key="sk-fake")

        async def one():
            # The SDK's raw-response path: same client, auth, retries and errors, but the SSE lines are
            # parsed here with json.loads instead of being built into pydantic chunk objects.
            t0 = time.perf_counter()
            first, n = None, 0
            async with client.chat.completions.with_streaming_response.create(
                model=a.model,
                messages=msgs,
                stream=True,
                stream_options={"include_usage": True},
            ) as resp:
                async for line in resp.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].lstrip(" ")
                    if payload == "[DONE]":
                        break
                    d = json.loads(payload)
                    ch = d.get("choices")
                    if ch and ch[0]["delta"].get("content"):
                        if first is None:
                            first = time.perf_counter() - t0
                        n += 1
            return first, time.perf_counter() - t0, n
    elif a.api == "openai":
        import openai

        client = openai.AsyncOpenAI(base_url=a.base_url, api_key="sk-fake")

        async def one():
            t0 = time.perf_counter()
            first, n = None, 0
            s = await client.chat.completions.create(
                model=a.model,
                messages=msgs,
                stream=True,
                stream_options={"include_usage": True},
            )
            async for c in s:
                if c.choices and c.choices[0].delta.content:
                    if first is None:
                        first = time.perf_counter() - t0
                    n += 1
            return first, time.perf_counter() - t0, n
    else:
        import anthropic

        client = anthropic.AsyncAnthropic(base_url=a.base_url, api_key="sk-fake")

        async def one():
            t0 = time.perf_counter()
            first, n = None, 0
            async with client.messages.stream(
                model=a.model, max_tokens=10_000_000, messages=msgs
            ) as s:
                async for _t in s.text_stream:
                    if first is None:
                        first = time.perf_counter() - t0
                    n += 1
            return first, time.perf_counter() - t0, n

    for _ in range(a.warmup):
        await one()
    ttft, dur, rates, tokens = [], [], [], 0
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t_start = time.perf_counter()
    for _ in range(a.requests):
        if time.perf_counter() - t_start > a.timeout:
            break
        f, d, n = await one()
        if f is not None:
            ttft.append(f)
        dur.append(d)
        rates.append(n / d if d else 0)
        tokens += n
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    await client.close()
    return {
        "label": a.label,
        "api": a.api,
        "raw": a.raw,
        "model": a.model,
        "requests": len(dur),
        "tokens_total": tokens,
        "ttft_ms": summary(ttft),
        "stream_duration_ms": summary(dur, ps=(50, 99)),
        "stream_tokens_per_s": summary(rates, scale=1.0, ps=(50,)),
        "client_cpu_s": round(cpu, 3),
        "client_cpu_us_per_token": round(cpu / tokens * 1e6, 1) if tokens else None,
    }


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--base-url", default="http://127.0.0.1:8900/v1")
    ap.add_argument("--api", choices=("openai", "anthropic"), default="openai")
    ap.add_argument("--model", default="gpt-4o-mini?tokens=20")
    ap.add_argument("--prompt", default="hello")
    ap.add_argument("-n", "--requests", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--label", default="")
    ap.add_argument(
        "--uvloop", action="store_true", help="run on uvloop (the peer's uvicorn does)"
    )
    ap.add_argument(
        "--raw",
        action="store_true",
        help="openai: read the stream with with_streaming_response + json.loads, not chunk objects",
    )
    a = ap.parse_args()
    if a.uvloop:
        import uvloop

        uvloop.install()
    print(json.dumps(asyncio.run(run(a))), flush=True)


if __name__ == "__main__":
    main()
