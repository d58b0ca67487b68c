#!/usr/bin/env python3
"""What one stream costs Redis and PostgreSQL, and what that lets N servers carry.

    .venv/bin/python bench/redis_cost.py                    # about 2 minutes on 2 cores
    .venv/bin/python bench/redis_cost.py --streams 50 --tokens 500 --shards 1

Runs `--streams` paced streams (`--tokens` at one per `--delay-ms`: 50 tokens/s by
default, scenario (c)'s pace) through `manage.py serve` on PostgreSQL and `--shards`
private redis-servers (REDIS_URL names them all), twice: read from the process that
runs them ("local"), and from a second process ("cross", every token fanned out
through Redis). Around each run it reads every server's INFO commandstats and
used_cpu_sys/user, and PostgreSQL's pg_stat_user_tables (rows inserted, updated) and
pg_stat_database (commits) for a database of its own, then prints JSON: commands,
Redis CPU and writes per stream and per stream-second (`docs/bench/redis.md`).
"""

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (  # noqa: E402  (bench/ is not a package)
    HERE,
    RELAY_ENV,
    RELAY_PYTHON,
    ROOT,
    free_port,
    redis_calls,
    redis_info,
    start_fake_provider,
    start_relay,
    start_streams,
    stop_all,
    wait_http,
)

PY = sys.executable


def prepare(database_url: str) -> tuple[dict[str, str], str]:
    """A fresh PostgreSQL database with a user and an API token: (env, token)."""
    server, _, _ = database_url.rpartition("/")
    name = f"bench_redis_cost_{secrets.token_hex(4)}"
    psql = ["psql", f"{server}/postgres", "-qAtc"]
    subprocess.run(psql + [f"create database {name}"], check=True)
    env = dict(os.environ) | RELAY_ENV
    env |= {"SECRET_KEY": secrets.token_urlsafe(50), "DATABASE_URL": f"{server}/{name}"}
    env.pop("REDIS_URL", None)
    manage = [str(RELAY_PYTHON), str(ROOT / "manage.py")]
    subprocess.run(manage + ["migrate", "-v", "0"], env=env, check=True, cwd=ROOT)
    make = (
        "from django.contrib.auth.models import User; User.objects.create(username='b')"
    )
    subprocess.run(manage + ["shell", "-c", make], env=env, check=True, cwd=ROOT)
    token = subprocess.run(
        manage + ["create_api_token", "b", "--name", "bench"],
        **{"env": env, "check": True, "cwd": ROOT, "capture_output": True},
        text=True,
    ).stdout.strip()
    return env, token


def pg_counts(database_url: str) -> dict[str, int]:
    """Rows inserted and updated in the relay's tables, and commits, so far."""
    query = (
        "select coalesce(sum(n_tup_ins), 0), coalesce(sum(n_tup_upd), 0),"
        " (select xact_commit from pg_stat_database where datname = current_database())"
        " from pg_stat_user_tables where relname like 'streaming_%'"
    )
    out = subprocess.run(
        ["psql", database_url, "-qAtc", "select pg_stat_clear_snapshot();" + query],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[-1]
    inserted, updated, commits = (int(v) for v in out.split("|"))
    return {"inserted": inserted, "updated": updated, "commits": commits}


def measure(args, env: dict[str, str], token: str, ports: list[int], cross: bool):
    directory = args.outdir / ("cross" if cross else "local")
    directory.mkdir(parents=True)
    processes: list = []
    try:
        fake = start_fake_provider(directory, processes)
        env = env | {
            "REDIS_URL": ",".join(f"redis://127.0.0.1:{p}/0" for p in ports),
            "OPENAI_BASE_URL": f"http://127.0.0.1:{fake}/v1",
            "OPENAI_API_KEY": "sk-fake",
            "STREAM_ORPHAN_GRACE_SECONDS": "30",  # viewers attach after every start
        }
        owner = start_relay(directory, env, "owner", processes)
        viewer = start_relay(directory, env, "viewer", processes) if cross else owner
        for base in {owner, viewer}:
            wait_http(f"{base}/healthz")
        idle = _idle_cpu(ports)
        before = [redis_info(port) for port in ports], pg_counts(env["DATABASE_URL"])
        started = time.monotonic()
        prompt = f"cost [fake?tokens={args.tokens}&delay_ms={args.delay_ms}]"
        ids = start_streams(owner, token, prompt, args.streams)
        urls = directory / "urls.txt"
        urls.write_text("".join(f"{viewer}/streams/{i}/events\n" for i in ids))
        command = [PY, str(HERE / "loadgen.py"), f"{viewer}/streams/0/events"]
        command += ["-c", str(args.streams), "--urls-file", str(urls)]
        command += ["-H", f"Authorization: Bearer {token}", "--timeout", "300"]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        viewed = json.loads(done.stdout.strip().splitlines()[-1])
        time.sleep(1)  # the final row writes and their statistics
        stop_all(processes)
        processes.clear()
        time.sleep(1)
        after = [redis_info(port) for port in ports], pg_counts(env["DATABASE_URL"])
        idle *= time.monotonic() - started
    finally:
        stop_all(processes)
    return summarise(args, before, after, viewed, idle)


def _cpu(info: dict[str, str]) -> float:
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _idle_cpu(ports: list[int], seconds: float = 5) -> float:
    """The CPU seconds a second the servers use doing nothing (their cron), which the
    cost of the streams leaves out."""
    before = sum(_cpu(redis_info(port)) for port in ports)
    time.sleep(seconds)
    return (sum(_cpu(redis_info(port)) for port in ports) - before) / seconds


def summarise(args, before, after, viewed, idle: float) -> dict:
    stream_seconds = args.streams * args.tokens * args.delay_ms / 1000
    per_shard, cpu, calls = [], 0.0, {}
    for was, now in zip(before[0], after[0], strict=True):
        old = redis_calls(was)
        used = {k: v - old.get(k, 0) for k, v in redis_calls(now).items()}
        used = {k: v for k, v in used.items() if v and k not in ("info", "ping")}
        seconds = _cpu(now) - _cpu(was)
        per_shard.append({"commands": sum(used.values()), "cpu_s": round(seconds, 3)})
        cpu += seconds
        for name, count in used.items():
            calls[name] = calls.get(name, 0) + count
    writes = {k: after[1][k] - before[1][k] for k in after[1]}
    commands = sum(calls.values())
    idle_s, cpu = idle, max(0.0, cpu - idle)
    return {
        "streams": args.streams,
        "stream_seconds": stream_seconds,
        "token_frames_received": viewed.get("tokens_total"),
        "streams_ok": viewed.get("streams_ok"),
        "redis": {
            "commands": calls,
            "per_shard": per_shard,
            "commands_per_stream": round(commands / args.streams, 1),
            "commands_per_stream_second": round(commands / stream_seconds, 2),
            "cpu_s": round(cpu, 3),  # over the idle servers' own
            "idle_cpu_s": round(idle_s, 3),
            "cpu_us_per_stream_second": round(cpu / stream_seconds * 1e6, 1),
            "cpu_us_per_command": round(cpu / max(commands, 1) * 1e6, 2),
        },
        "postgres": writes
        | {
            "rows_written_per_stream": round(
                (writes["inserted"] + writes["updated"]) / args.streams, 2
            ),
            "commits_per_stream": round(writes["commits"] / args.streams, 2),
            "commits_per_stream_second": round(writes["commits"] / stream_seconds, 3),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--delay-ms", type=int, default=20)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--outdir", type=Path, default=None)
    args = parser.parse_args()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    args.outdir = args.outdir or HERE / "results" / f"redis-cost-{stamp}"
    servers, env = [], {}
    try:
        ports = [free_port() for _ in range(args.shards)]
        for port in ports:
            servers.append(
                subprocess.Popen(
                    ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
                    + ["--save", "", "--appendonly", "no"],
                    stdout=subprocess.DEVNULL,
                )
            )
        time.sleep(0.5)
        env, token = prepare(args.database_url)
        report = {
            "command": " ".join(sys.argv),
            "local": measure(args, env, token, ports, cross=False),
            "cross": measure(args, env, token, ports, cross=True),
        }
    finally:
        stop_all(servers)
        if "DATABASE_URL" in env:
            drop = f"drop database {env['DATABASE_URL'].rpartition('/')[2]}"
            server = args.database_url.rpartition("/")[0]
            subprocess.run(["psql", f"{server}/postgres", "-qAtc", drop], check=False)
    print(json.dumps(report, indent=2))
    (args.outdir / "redis_cost.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
