#!/usr/bin/env python3
"""Where a paced stream's CPU goes: py-spy on a `manage.py serve` process under load.

    .venv-bench/bin/python bench/profile_cpu.py [--streams 200] [--seconds 6] [--top 25]

Starts the fake provider (core 1) and our relay (core 0, production settings, SQLite,
the in-memory layer, as bench/run.py does), warms it up, then runs scenario (c)'s load
(`--streams` streams of `--tokens` tokens every `--delay-ms`, starts spread over 2 s)
with the load generator on core 1 and samples the relay with py-spy for `--seconds`
of the steady state. Prints CPU per token (from /proc), the share of samples per
layer (our code, Django, daphne/Twisted, aiohttp, asyncio, ...) counted at the
innermost frame, the top functions by own time, and our own functions inclusive, as
Markdown for docs/bench/profile.md. Stacks go to `--outdir` (speedscope's collapsed
format, `py-spy record -f raw`).
"""

import argparse
import collections
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import (  # noqa: E402
    prepare_relay,
    start_fake_provider,
    start_relay,
    stop_all,
    wait_http,
)

PY_SPY = Path(sys.executable).parent / "py-spy"

# The innermost frame's file decides the layer; the first pattern that matches wins.
LAYERS = (
    ("our code (streaming/)", "(streaming/"),
    ("Django", "(django/"),
    ("daphne", "(daphne/"),
    ("Twisted", "(twisted/"),
    ("aiohttp", "(aiohttp/"),
    ("openai SDK", "(openai/"),
    ("httpx", "(httpx"),
    ("asgiref", "(asgiref/"),
    ("channels", "(channels/"),
    ("json", "(json/"),
    ("asyncio", "(asyncio/"),
    ("threads (concurrent.futures)", "(concurrent/"),
)


def layer_of(frame: str) -> str:
    """py-spy names a frame `function (path:line)`, the path relative to its root."""
    for name, pattern in LAYERS:
        if pattern in frame:
            return name
    path = frame.rpartition(" (")[2]
    return "Python (other stdlib)" if "/" not in path else "other"


def short(frame: str) -> str:
    """`function (path:line)` with the path cut to what follows site-packages or the
    checkout."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    return f"{name} ({path})"


def pct(result: dict, name: str) -> str:
    values = result.get(name) or {}
    return f"{values.get('p50', 0):.0f}/{values.get('p99', 0):.0f}"


def tokens_sent(fake_port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{fake_port}/stats") as response:
        return json.load(response)["tokens_sent"]


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def analyse(raw: Path, top: int) -> tuple[int, str]:
    layers: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        layers[layer_of(leaf)] += count
        own[short(leaf)] += count
        for frame in {short(f) for f in frames if "(streaming/" in f}:
            ours[frame] += count
    out = ["| layer (innermost frame) | share of samples |", "| --- | ---: |"]
    out += [f"| {k} | {v / total:.1%} |" for k, v in layers.most_common()]
    out += ["", "| function (own time) | share |", "| --- | ---: |"]
    out += [f"| `{k}` | {v / total:.1%} |" for k, v in own.most_common(top)]
    out += ["", "| our function (inclusive) | share |", "| --- | ---: |"]
    out += [f"| `{k}` | {v / total:.1%} |" for k, v in ours.most_common(top)]
    return total, "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=750)
    parser.add_argument("--delay-ms", type=int, default=20)
    parser.add_argument("--ramp-s", type=float, default=2.0, help="starts spread over")
    parser.add_argument("--sample-after", type=float, default=3.0, help="seconds")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples/s")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--outdir")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE")
    args = parser.parse_args()
    directory = Path(args.outdir or tempfile.mkdtemp(prefix="profile-cpu-"))
    directory.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen] = []
    try:
        fake_port = start_fake_provider(directory, processes)
        env, token = prepare_relay(directory)
        env |= {
            "OPENAI_BASE_URL": f"http://127.0.0.1:{fake_port}/v1",
            "OPENAI_API_KEY": "sk-fake",
        } | dict(pair.split("=", 1) for pair in args.env)
        base = start_relay(directory, env, "relay", processes)
        wait_http(f"{base}/healthz")
        relay = processes[-1]
        loadgen = [
            "taskset", "-c", "1", sys.executable, str(HERE / "loadgen.py"),
            "-H", f"Authorization: Bearer {token}", "--timeout", "120",
        ]  # fmt: skip
        prompt = f"hello [fake?tokens={args.tokens}&delay_ms={args.delay_ms}]"
        url = f"{base}/chat/stream?" + urllib.parse.urlencode({"prompt": prompt})
        warm = f"{base}/chat/stream?prompt=warm+%5Bfake%3Ftokens%3D5%5D"
        subprocess.run(loadgen + [warm, "-c", "5"], check=True, capture_output=True)
        ticks = cpu_ticks(relay.pid)
        load_started = time.monotonic()
        load = subprocess.Popen(
            loadgen + [url, "-c", str(args.streams), "--ramp-s", str(args.ramp_s)],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(args.sample_after)  # by default once every stream started
        raw = directory / "relay.raw"
        started = time.monotonic()
        subprocess.run(
            [str(PY_SPY), "record", "--pid", str(relay.pid), "--rate", str(args.rate),
             "--duration", str(int(args.seconds)), "--format", "raw", "--nonblocking",
             "--output", str(raw)],
            check=True, capture_output=True,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        result = json.loads(load.communicate()[0].strip().splitlines()[-1])
        cpu = (cpu_ticks(relay.pid) - ticks) / os.sysconf("SC_CLK_TCK")
        load_elapsed = time.monotonic() - load_started
        tokens = tokens_sent(fake_port) - 25  # less the warm-up's
        samples, tables = analyse(raw, args.top)
        print(f"command: `{shlex.join(['bench/profile_cpu.py', *sys.argv[1:]])}`\n")
        print(
            f"{args.streams} streams at {1000 / args.delay_ms:.0f} tokens/s, "
            f"{result.get('streams_ok')} completed, TTFT p50/p99 "
            f"{pct(result, 'ttft_ms')} ms, gap p99 "
            f"{(result.get('gap_ms') or {}).get('p99')} ms; relay CPU {cpu:.2f} s "
            f"in {load_elapsed:.1f} s ({cpu / load_elapsed:.0%} of a core) for "
            f"{tokens} tokens: {cpu / tokens * 1e6:.0f} µs per token; "
            f"{samples} samples in {elapsed:.1f} s of it\n"
        )
        print(tables)
    finally:
        stop_all(processes)


if __name__ == "__main__":
    main()
