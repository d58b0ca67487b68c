#!/usr/bin/env python3
"""Where one open stream's memory goes: tracemalloc in a `manage.py serve` process.

    .venv/bin/python bench/profile_memory.py [--streams 1000] [--top 30]

Starts the fake provider and our relay (production settings, SQLite, in-memory layer,
as bench/run.py does) with tracemalloc on, takes a snapshot, opens `--streams`
streams whose upstream holds them open (`/chat/stream`, one token a second), takes a
second snapshot once they are all running, and prints the difference per stream,
grouped by the line that allocated (and by file), with RSS beside it. The relay is
started by a launcher that dumps a snapshot on SIGUSR1, so no product code knows of
the profiler.
"""

import argparse
import asyncio
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import (  # noqa: E402
    RELAY_PYTHON,
    ROOT,
    free_port,
    prepare_relay,
    start_fake_provider,
    stop_all,
    wait_http,
)

LAUNCHER = """
import os, runpy, signal, sys, tracemalloc
tracemalloc.start(int(os.environ["PROFILE_FRAMES"]))
count = [0]
def dump(*_):
    count[0] += 1
    tracemalloc.take_snapshot().dump(f"{os.environ['PROFILE_DIR']}/snap{count[0]}")
    open(f"{os.environ['PROFILE_DIR']}/snap{count[0]}.done", "w").close()
signal.signal(signal.SIGUSR1, dump)
sys.argv = ["manage.py", "serve", "--host", "127.0.0.1", "--port", sys.argv[1]]
runpy.run_path("manage.py", run_name="__main__")
"""


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def snapshot(process: subprocess.Popen, directory: Path, n: int):
    process.send_signal(signal.SIGUSR1)
    done = directory / f"snap{n}.done"
    deadline = time.monotonic() + 120
    while not done.exists():
        if time.monotonic() > deadline:
            raise TimeoutError("no snapshot")
        time.sleep(0.2)
    return tracemalloc.Snapshot.load(str(directory / f"snap{n}"))


async def hold(port: int, path: str, token: str, started: list[int]) -> None:
    """One stream, read slowly until it ends."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    first = True
    while chunk := await reader.read(65536):
        if first and b"event: token" in chunk:
            started[0] += 1
            first = False
    writer.close()


async def open_streams(
    port: int, token: str, count: int, settle: float, tokens: int = 600
):
    prompt = f"hold [fake?tokens={tokens}&delay_ms=1000]"  # open until the snapshot
    path = "/chat/stream?" + urllib.parse.urlencode({"prompt": prompt})
    started = [0]
    tasks = []
    for _ in range(count):
        tasks.append(asyncio.create_task(hold(port, path, token, started)))
        await asyncio.sleep(0.002)
    deadline = time.monotonic() + 180  # tracemalloc slows every start
    while started[0] < count and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(settle)
    return tasks, started[0]


def report(before, after, count: int, top: int) -> str:
    lines = []
    for key in ("lineno", "filename"):
        stats = after.compare_to(before, key)
        total = sum(stat.size_diff for stat in stats)
        lines.append(f"\n## by {key}: {total / count / 1024:.1f} KB per stream\n")
        lines.append("| KB per stream | objects per stream | where |")
        lines.append("| ---: | ---: | --- |")
        for stat in stats[:top]:
            frame = stat.traceback[0]
            name = os.path.relpath(frame.filename, ROOT)
            where = f"{name}:{frame.lineno}" if key == "lineno" else name
            lines.append(
                f"| {stat.size_diff / count / 1024:.2f} "
                f"| {stat.count_diff / count:.1f} | `{where}` |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("--settle", type=float, default=2.0)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="profile-memory-"))
    processes: list[subprocess.Popen] = []
    try:
        fake_port = start_fake_provider(directory, processes)
        env, token = prepare_relay(directory)
        env |= {
            "OPENAI_BASE_URL": f"http://127.0.0.1:{fake_port}/v1",
            "OPENAI_API_KEY": "sk-fake",
            "STREAM_ORPHAN_GRACE_SECONDS": "30",
            "PROFILE_DIR": str(directory),
            "PROFILE_FRAMES": str(args.frames),
        }
        port = free_port()
        command = ["taskset", "-c", "0", str(RELAY_PYTHON), "-c", LAUNCHER, str(port)]
        relay = subprocess.Popen(
            command,
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=open(directory / "relay.log", "w"),
        )
        processes.append(relay)
        wait_http(f"http://127.0.0.1:{port}/healthz")

        async def run() -> None:
            # Warm up: the first stream loads the SDK, templates, the pools.
            warm, _ = await open_streams(port, token, 5, 0, tokens=2)
            await asyncio.gather(*warm)
            rss_before = rss_kb(relay.pid)
            before = snapshot(relay, directory, 1)
            tasks, started = await open_streams(port, token, args.streams, args.settle)
            rss_after = rss_kb(relay.pid)
            after = snapshot(relay, directory, 2)
            print(f"# {started} of {args.streams} streams running")
            print(f"command: {shlex.join(sys.argv)}")
            print(
                f"RSS {rss_before} → {rss_after} KB: "
                f"{(rss_after - rss_before) / args.streams:.1f} KB per stream"
            )
            print(report(before, after, args.streams, args.top))
            for task in tasks:
                task.cancel()

        asyncio.run(run())
    finally:
        stop_all(processes)


if __name__ == "__main__":
    main()
