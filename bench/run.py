#!/usr/bin/env python3
"""The benchmark: our relay and the FastAPI peer, side by side, in one run.

    make bench                        # everything (about 30 minutes on 2 cores)
    make bench ARGS="--quick"         # one run per point, fewer levels (about 10 minutes)

Both relays run the same scenarios (`suite.py`) against the same fake provider, each
measured run in fresh processes, the relay pinned to core 0 and the fake provider and
load generator to core 1. Our relay runs as users run it: `manage.py serve` with
production settings (DEBUG off), an API token, its SQLite database and the in-memory
channel layer; scenario (g) runs two `manage.py serve` processes on Redis and watches a
stream started on one from the other; scenario (v) watches 200 running streams a second
time and measures RSS per extra viewer; scenario (s) opens 100 viewers of an
8,000,000-character answer that never read and measures what each costs beyond the
answer's text they share, against a process with one of them (a smaller answer fits in
the kernel's socket buffers, which Linux grows to 4 MB on loopback). Scenario a2, (a'),
times the first token of a 5,000-token answer the provider sends at once; scenario (r)
starts 300 streams within 2 s, our relay with its token, its row and its limits on (set
high enough to refuse no start).

Writes bench/results/<UTC>/: peer/ and relay/ (raw runs and summaries per system),
results.json (both, plus g), RESULTS.md (the tables) and plot.png.
"""

import argparse
import datetime
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RELAY_PYTHON = ROOT / ".venv" / "bin" / "python"
PY = sys.executable

RELAY_ENV = {
    "DEBUG": "false",
    "ALLOWED_HOSTS": "127.0.0.1",
    "SECURE_SSL_REDIRECT": "false",
    "SECURE_HSTS_SECONDS": "0",
    "LOG_LEVEL": "WARNING",
    "DEFAULT_PROVIDER": "openai",
    "MAX_OUTPUT_TOKENS": "1000000",
    "PROVIDER_MAX_RETRIES": "0",
    # Limits measure people, not the relay: out of the way.
    "LIMIT_CONCURRENT_STREAMS": "1000000",
    "LIMIT_STARTS_PER_MINUTE": "10000000",
    "LIMIT_TOKENS_PER_DAY": "0",
    "LIMIT_VIEWERS_PER_USER": "0",
    # (e) measures how soon a hang-up closes the upstream: after this grace.
    "STREAM_ORPHAN_GRACE_SECONDS": "1",
    "STREAM_DRAIN_SECONDS": "1",
}
# (r) checks the limits as users run them, set high enough that no start is refused.
R_LIMITS = {
    "LIMIT_CONCURRENT_STREAMS": "10000",
    "LIMIT_STARTS_PER_MINUTE": "100000",
    "LIMIT_TOKENS_PER_DAY": "1000000000",
    "LIMIT_VIEWERS_PER_USER": "10000",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_relay(outdir: Path) -> tuple[dict[str, str], str]:
    """A database for our relay with a user and an API token: (environment, token)."""
    env = dict(os.environ) | RELAY_ENV
    env["SECRET_KEY"] = secrets.token_urlsafe(50)
    env["DATABASE_URL"] = f"sqlite:///{outdir / 'relay.sqlite3'}"
    for name in ("REDIS_URL", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
    manage = [str(RELAY_PYTHON), str(ROOT / "manage.py")]
    subprocess.run(manage + ["migrate", "-v", "0"], env=env, check=True, cwd=ROOT)
    make = (
        "from django.contrib.auth.models import User; "
        "User.objects.get_or_create(username='bench')"
    )
    subprocess.run(manage + ["shell", "-c", make], env=env, check=True, cwd=ROOT)
    token = subprocess.run(
        manage + ["create_api_token", "bench", "--name", "bench"],
        env=env,
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return env, token


def serve_command(port: str = "{port}") -> str:
    return f"{RELAY_PYTHON} {ROOT / 'manage.py'} serve --host 127.0.0.1 --port {port}"


def run_suite(name: str, outdir: Path, args, extra: list[str], env=None) -> dict:
    command = [PY, str(HERE / "suite.py"), "--name", name, "--outdir", str(outdir)]
    command += ["--only", args.only, "--runs", str(args.runs), "--levels", args.levels]
    command += ["--runs-b", str(args.runs_b), "--open-streams", str(args.open_streams)]
    command += [
        "--a2-requests",
        str(args.a2_requests),
        "--r-streams",
        str(args.r_streams),
    ]
    print(f"== {name}: {shlex.join(command + extra)}", flush=True)
    subprocess.run(command + extra, env=env, check=True)
    return json.loads((outdir / "summary.json").read_text())


# --------------------------------------------------------------------------- (g)


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                response.read()
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def redis_info(port: int) -> dict[str, str]:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"INFO all\r\n")
        data = b""
        while not data.endswith(b"\r\n\r\n") and b"# Keyspace" not in data:
            data += s.recv(65536)
        while True:  # the rest of the bulk reply
            s.settimeout(0.2)
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
    info = {}
    for line in data.decode().splitlines():
        if ":" in line and not line.startswith("#"):
            key, _, value = line.partition(":")
            info[key] = value
    return info


def redis_calls(info: dict[str, str]) -> dict[str, int]:
    calls = {}
    for key, value in info.items():
        if key.startswith("cmdstat_"):
            fields = dict(part.split("=") for part in value.split(","))
            calls[key[8:]] = int(fields["calls"])
    return calls


def start_fake_provider(directory: Path, processes: list) -> int:
    """The fake provider on core 1 (appended to `processes`); its port."""
    port = free_port()
    processes.append(
        subprocess.Popen(
            [
                "taskset",
                "-c",
                "1",
                PY,
                str(HERE / "fake_provider.py"),
                "--port",
                str(port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(directory / "fake.log", "w"),
        )
    )
    wait_http(f"http://127.0.0.1:{port}/health")
    return port


def start_relay(
    directory: Path, env: dict[str, str], name: str, processes: list
) -> str:
    """`manage.py serve` on core 0 (appended to `processes`); its URL."""
    port = free_port()
    processes.append(
        subprocess.Popen(
            ["taskset", "-c", "0"] + shlex.split(serve_command(str(port))),
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=open(directory / f"{name}.log", "w"),
        )
    )
    return f"http://127.0.0.1:{port}"


def start_streams(base: str, token: str, prompt: str, count: int) -> list[int]:
    """POST /streams/ `count` times; the new streams' ids."""
    ids = []
    for _ in range(count):
        request = urllib.request.Request(
            f"{base}/streams/",
            data=json.dumps({"prompt": prompt}).encode(),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
            },
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            ids.append(json.loads(response.read())["id"])
    return ids


def stop_all(processes: list) -> None:
    for process in reversed(processes):
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def g_cross_process(outdir: Path, env: dict[str, str], token: str, args) -> dict:
    """A stream on one `manage.py serve` watched from a second through a private Redis."""
    directory = outdir / "g"
    directory.mkdir()
    redis_port = free_port()
    processes: list = []
    pin = ["taskset", "-c", "1"]
    try:
        processes.append(
            subprocess.Popen(
                pin
                + ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1"]
                + ["--save", "", "--appendonly", "no"],
                stdout=open(directory / "redis.log", "w"),
            )
        )
        fake_port = start_fake_provider(directory, processes)
        env = env | {
            # The streams wait for their viewer on the other process: default grace.
            "STREAM_ORPHAN_GRACE_SECONDS": "30",
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "OPENAI_BASE_URL": f"http://127.0.0.1:{fake_port}/v1",
            "OPENAI_API_KEY": "sk-fake",
        }
        owner, viewer = (
            start_relay(directory, env, f"relay-{i}", processes) for i in range(2)
        )
        for base in (owner, viewer):
            wait_http(f"{base}/healthz")
        streams = args.g_streams
        options = f"tokens={args.c_tokens}&delay_ms=20"
        results = {}
        before = redis_info(redis_port)
        # Start the streams on the owner, then watch every one of them from the viewer.
        ids = start_streams(owner, token, f"hello [fake?{options}]", streams)
        url_file = directory / "urls.txt"
        url_file.write_text("".join(f"{viewer}/streams/{i}/events\n" for i in ids))
        command = pin + [
            PY,
            str(HERE / "loadgen.py"),
            f"{viewer}/streams/{ids[0]}/events",
        ]
        command += ["-c", str(streams), "--timeout", "120"]
        command += ["-H", f"Authorization: Bearer {token}"]
        command += ["--urls-file", str(url_file)]
        command += ["--pid", str(processes[-1].pid)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=200)
        results["viewer"] = json.loads(done.stdout.strip().splitlines()[-1])
        after = redis_info(redis_port)
        calls_before, calls_after = redis_calls(before), redis_calls(after)
        calls = {k: v - calls_before.get(k, 0) for k, v in calls_after.items()}
        calls = {k: v for k, v in calls.items() if v}
        cpu = sum(
            float(after[k]) - float(before[k])
            for k in ("used_cpu_sys", "used_cpu_user")
        )
        tokens = results["viewer"].get("tokens_total") or 1
        results |= {
            "streams": streams,
            "tokens_per_stream": args.c_tokens,
            "redis_calls": calls,
            "redis_cpu_s": round(cpu, 4),
            "redis_cpu_us_per_token": round(cpu / tokens * 1e6, 2),
            "publish_per_token": round(calls.get("publish", 0) / tokens, 4),
        }
        return results
    finally:
        stop_all(processes)


# --------------------------------------------------------------------------- (v)


def v_extra_viewers(outdir: Path, env: dict[str, str], token: str, args) -> dict:
    """RSS per extra viewer: streams each watched once, then each a second time."""
    directory = outdir / "v"
    directory.mkdir()
    processes: list = []
    pin = ["taskset", "-c", "1"]
    streams = args.v_streams
    try:
        fake_port = start_fake_provider(directory, processes)
        env = env | {
            "STREAM_ORPHAN_GRACE_SECONDS": "30",
            "OPENAI_BASE_URL": f"http://127.0.0.1:{fake_port}/v1",
            "OPENAI_API_KEY": "sk-fake",
        }
        base = start_relay(directory, env, "relay", processes)
        wait_http(f"{base}/healthz")
        relay_pid = processes[-1].pid
        # Long, slow answers: all of them are still running while the viewers come.
        prompt = "hold [fake?tokens=30&delay_ms=1000]"
        ids = start_streams(base, token, prompt, streams)
        urls = directory / "urls.txt"
        urls.write_text("".join(f"{base}/streams/{i}/events\n" for i in ids))

        def viewers() -> list[str]:
            command = pin + [PY, str(HERE / "loadgen.py"), f"{base}/streams/0/events"]
            command += [
                "-c",
                str(streams),
                "--timeout",
                "120",
                "--urls-file",
                str(urls),
            ]
            command += ["-H", f"Authorization: Bearer {token}"]
            command += ["--pid", str(relay_pid), "--rss-interval", "0.2"]
            return command

        first = subprocess.Popen(viewers(), stdout=subprocess.PIPE, text=True)
        time.sleep(5)  # every first viewer attached and reading
        second = subprocess.run(
            viewers(), capture_output=True, text=True, timeout=200, check=True
        )
        first_out, _ = first.communicate(timeout=200)
        once = json.loads(first_out.strip().splitlines()[-1])
        twice = json.loads(second.stdout.strip().splitlines()[-1])
        start, peak = twice["server"]["rss_start_kb"], twice["server"]["rss_peak_kb"]
        return {
            "streams": streams,
            "first_viewers_ok": once.get("streams_ok"),
            "second_viewers_ok": twice.get("streams_ok"),
            "rss_with_one_viewer_each_kb": start,
            "rss_with_two_viewers_each_kb": peak,
            "rss_per_extra_viewer_kb": round((peak - start) / streams, 2),
        }
    finally:
        stop_all(processes)


# --------------------------------------------------------------------------- (s)


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _stalled_viewer(base: str, path: str, token: str) -> socket.socket:
    """A viewer that sends its request and never reads: its TCP window fills."""
    host, port = base.removeprefix("http://").split(":")
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect((host, int(port)))
    client.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    return client


def _stalled_rss(directory: Path, env, token: str, args, viewers: int, late: bool):
    """One fresh process, one `--s-chars` answer, `viewers` viewers that never read,
    there from the start or (`late`) joining once it is complete: RSS (KB) before the
    stream, with them all stuck, and after they close."""
    directory.mkdir()
    processes: list = []
    try:
        fake_port = start_fake_provider(directory, processes)
        env = env | {
            "OPENAI_BASE_URL": f"http://127.0.0.1:{fake_port}/v1",
            "OPENAI_API_KEY": "sk-fake",
            "STREAM_VIEWER_STALL_SECONDS": "600",  # stay for the measurement
        }
        base = start_relay(directory, env, "relay", processes)
        wait_http(f"{base}/healthz")
        pid = processes[-1].pid
        before = _rss_kb(pid)
        tokens = args.s_chars // 100
        prompt = f"long [fake?pattern=chars&token_chars=100&tokens={tokens}&delay_ms=0]"
        (stream_id,) = start_streams(base, token, prompt, 1)
        path = f"/streams/{stream_id}/events"
        if late:
            time.sleep(20)  # the answer is complete
        stuck = [_stalled_viewer(base, path, token) for _ in range(viewers)]
        time.sleep(15 if late else 30)  # the answer is complete; every viewer is stuck
        stalled = _rss_kb(pid)
        for viewer in stuck:
            viewer.close()
        time.sleep(5)
        return before, stalled, _rss_kb(pid)
    finally:
        stop_all(processes)


def s_stalled_viewers(outdir: Path, env: dict[str, str], token: str, args) -> dict:
    """What a viewer that never reads costs beyond the answer's text the viewers share:
    a process with `--s-viewers` of them against one with a single one, each viewer
    there from the start; then the same number joining once the answer is complete."""
    directory = outdir / "s"
    directory.mkdir()
    n = args.s_viewers
    _, one, _ = _stalled_rss(directory / "one", env, token, args, 1, late=False)
    before, stalled, after = _stalled_rss(directory / "all", env, token, args, n, False)
    _, late, _ = _stalled_rss(directory / "late", env, token, args, n, late=True)
    extra = max(1, n - 1)
    return {
        "viewers": n,
        "answer_chars": args.s_chars,
        "rss_before_kb": before,
        "rss_one_stalled_kb": one,
        "rss_stalled_kb": stalled,
        "rss_after_close_kb": after,
        "rss_late_stalled_kb": late,
        "rss_per_stalled_viewer_kb": round((stalled - before) / n, 1),
        "rss_per_stalled_viewer_beyond_text_kb": round((stalled - one) / extra, 1),
        "rss_per_late_stalled_viewer_beyond_text_kb": round((late - one) / extra, 1),
    }


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one run per point")
    parser.add_argument("--only", default="a,a2,b,c,d,e,f,o,r")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--runs-b", type=int, default=5)
    parser.add_argument("--levels", default="50,100,200,300,500,1000")
    parser.add_argument("--open-streams", type=int, default=1000)
    parser.add_argument("--c-tokens", type=int, default=200)
    parser.add_argument("--a2-requests", type=int, default=50)
    parser.add_argument("--r-streams", type=int, default=300)
    parser.add_argument("--g-streams", type=int, default=20)
    parser.add_argument("--no-g", action="store_true", help="skip the Redis scenario")
    parser.add_argument("--v-streams", type=int, default=200)
    parser.add_argument("--no-v", action="store_true", help="skip the extra viewers")
    parser.add_argument("--s-viewers", type=int, default=100)
    parser.add_argument("--s-chars", type=int, default=8_000_000)
    parser.add_argument("--no-s", action="store_true", help="skip stalled viewers")
    parser.add_argument("--only-s", action="store_true", help="only stalled viewers")
    parser.add_argument("--systems", default="peer,relay")
    parser.add_argument("--outdir")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.runs_b = 1, 3
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    outdir = Path(args.outdir or HERE / "results" / stamp)
    outdir.mkdir(parents=True, exist_ok=True)
    print(f"results -> {outdir}", flush=True)

    env, token = prepare_relay(outdir)
    results: dict = {"command": shlex.join(sys.argv), "systems": {}}
    if args.only_s:
        args.systems, args.no_g, args.no_v = "", True, True
    systems = args.systems.split(",")
    if "peer" in systems:
        results["systems"]["peer"] = run_suite("peer", outdir / "peer", args, [])
    if "relay" in systems:
        relay_args = ["--relay-cmd", serve_command(), "--ready-path", "/healthz"]
        relay_args += ["--loadgen-extra", f"-H 'Authorization: Bearer {token}'"]
        limits = " ".join(f"{name}={value}" for name, value in R_LIMITS.items())
        relay_args += ["--r-relay-env", limits]
        results["systems"]["relay"] = run_suite(
            "relay", outdir / "relay", args, relay_args, env=env
        )
    if not args.no_g:
        print("== g: a stream on one process watched from another through Redis")
        results["g_cross_process"] = g_cross_process(outdir, env, token, args)
    if not args.no_v:
        print("== v: memory per extra viewer of a stream")
        results["v_extra_viewers"] = v_extra_viewers(outdir, env, token, args)
    if not args.no_s:
        print("== s: viewers that stop reading")
        results["s_stalled_viewers"] = s_stalled_viewers(outdir, env, token, args)
        print(json.dumps(results["s_stalled_viewers"]), flush=True)
    (outdir / "results.json").write_text(json.dumps(results, indent=1))
    subprocess.run([PY, str(HERE / "report.py"), str(outdir)], check=True)


if __name__ == "__main__":
    main()
