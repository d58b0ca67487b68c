#!/usr/bin/env python3
"""Run the benchmark scenarios against one relay (by default the FastAPI peer).

`bench/run.py` runs this for the peer and for our relay, side by side, and reports both;
this file is the shared bench's `bench_peer.py`, plus starts spread over --ramp-s in (c),
the open-streams scenario (o), the burst TTFT (a2) and the burst of starts (r).

    .venv-bench/bin/python bench/suite.py [--only a,a2,b,c,d,e,f,h,o,r] [--runs 3] [--levels 100,500,1000]

Every measured run starts a fresh fake provider and a fresh peer as separate processes, the peer
under `/usr/bin/time -v`. CPU pinning (default on, --no-pin to disable): the relay under test gets
core 0 (`taskset -c 0`), the fake provider and the load generator share core 1, so the harness does
not steal the relay's core. Results go to results/peer-<UTC time>/ (one JSON line per run in
runs.jsonl, the medians in summary.json) and a Markdown summary is printed.

Scenarios:
  a  relay overhead: TTFT through the peer (loadgen, 50 sequential) minus TTFT straight from the
     fake provider with the openai SDK (sdk_client.py, 50 sequential, on the relay's core)
  a2 (a') TTFT of a 5,000-token answer the provider sends at once (delay_ms=0),
     sequential (--a2-requests after 5 warm-ups): the first token must not wait behind the rest
  b  max relay throughput of one stream: 5000 tokens, no delay (also: SDK alone, harness alone)
  c  concurrency: N streams x 200 tokens at 20 ms/token (N from --levels)
  h  harness alone at the same levels (loadgen straight to the fake provider): the best any relay
     could show on this machine
  d  memory: one 1,000,000-character response (250,000 tokens of 4 chars) vs one of 1,000 characters
  e  disconnect propagation: 20 streams of 500 tokens at 20 ms, client hangs up after 10 tokens;
     does the peer close its upstream request?
  f  fidelity: 500 tricky tokens (newlines, CR, leading spaces, emoji, multi-byte) through the peer
  o  open streams: --open-streams streams held open at once (10 tokens at 1 s, starts spread
     over --ramp-s): RSS per open stream
  r  a burst of starts: --r-streams streams started within --r-ramp-s, each --r-tokens at
     --r-delay-ms (cheap tokens: TTFT measures the start path); TTFT, completed, RSS per
     stream while they run; --r-relay-env sets the relay's environment for it (limits)

The relay under test is selected by --relay-cmd (default: the peer); the app can later be measured
with the same scenarios by passing its own command, URL path and prompt parameter.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable
VENV_BIN = os.path.dirname(PY)

FAKE_PORT = 8900
RELAY_PORT = 8001


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                r.read()
                return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def http_json(url: str, method="GET"):
    req = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def pin(core: int | None) -> list[str]:
    return ["taskset", "-c", str(core)] if core is not None else []


class Procs:
    """Start the fake provider and the relay; stop both by their own PIDs."""

    def __init__(
        self, a, outdir: str, tag: str, relay: bool = True, env: dict | None = None
    ):
        self.a = a
        self.with_relay = relay
        self.extra_env = env or {}
        self.outdir = outdir
        self.tag = tag
        self.fake = None
        self.relay = None
        self.relay_pid = None
        self.time_file = os.path.join(outdir, f"time-{tag}.txt")

    def __enter__(self):
        a = self.a
        self.fake_port = free_port()
        self.relay_port = free_port()
        self.fake = subprocess.Popen(
            pin(a.harness_core)
            + [
                PY,
                os.path.join(HERE, "fake_provider.py"),
                "--port",
                str(self.fake_port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.outdir, f"fake-{self.tag}.log"), "w"),
        )
        wait_http(f"http://127.0.0.1:{self.fake_port}/health")
        if not self.with_relay:
            return self
        env = dict(os.environ)
        env.update(
            {
                "OPENAI_BASE_URL": f"http://127.0.0.1:{self.fake_port}/v1",
                "OPENAI_API_KEY": "sk-fake",
                "OPENAI_MODEL": "gpt-4o-mini",
                "FAKE_BASE_URL": f"http://127.0.0.1:{self.fake_port}",
                "RELAY_PORT": str(self.relay_port),
                "PATH": VENV_BIN + os.pathsep + env.get("PATH", ""),
            }
        )
        env.update(self.extra_env)
        cmd = a.relay_cmd.format(
            port=self.relay_port, fake_port=self.fake_port, here=HERE, venv_bin=VENV_BIN
        )
        self.relay = subprocess.Popen(
            ["/usr/bin/time", "-v", "-o", self.time_file]
            + pin(a.relay_core)
            + ["bash", "-c", "exec " + cmd],
            env=env,
            cwd=HERE,
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.outdir, f"relay-{self.tag}.log"), "w"),
        )
        wait_http(f"http://127.0.0.1:{self.relay_port}{a.ready_path}", timeout=60)
        kids = _children(self.relay.pid)
        self.relay_pid = kids[0] if kids else self.relay.pid
        return self

    def url(self, prompt: str) -> str:
        return (
            f"http://127.0.0.1:{self.relay_port}{self.a.stream_path}?"
            + urllib.parse.urlencode({self.a.prompt_param: prompt})
        )

    def fake_stats(self, recent=0):
        return http_json(f"http://127.0.0.1:{self.fake_port}/stats?recent={recent}")

    def fake_reset(self):
        http_json(f"http://127.0.0.1:{self.fake_port}/stats/reset", method="POST")

    def __exit__(self, *exc):
        if self.relay is not None:
            try:
                os.kill(self.relay_pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                self.relay.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.relay_pid, signal.SIGKILL)
                self.relay.wait(5)
        if self.fake is not None:
            self.fake.terminate()
            try:
                self.fake.wait(10)
            except subprocess.TimeoutExpired:
                self.fake.kill()
                self.fake.wait(5)
        return False

    def time_v(self) -> dict:
        try:
            txt = open(self.time_file).read()
        except OSError:
            return {}
        out = {}
        for key, name in (
            ("Maximum resident set size (kbytes)", "max_rss_kb"),
            ("User time (seconds)", "user_s"),
            ("System time (seconds)", "sys_s"),
            ("Percent of CPU this job got", "cpu_pct"),
            ("Voluntary context switches", "vol_ctx"),
            ("Involuntary context switches", "invol_ctx"),
        ):
            m = re.search(re.escape(key) + r":\s*([\d.]+)", txt)
            if m:
                out[name] = float(m.group(1))
        return out


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def loadgen(
    a, url: str, *extra: str, timeout: float = 180.0, pid: int | None = None
) -> dict:
    cmd = pin(a.harness_core) + [
        PY,
        os.path.join(HERE, "loadgen.py"),
        url,
        "--timeout",
        str(timeout),
        *extra,
    ]
    if "--mode" not in extra:
        cmd += shlex.split(a.loadgen_extra)  # e.g. cookies / headers the relay needs
    if pid:
        cmd += ["--pid", str(pid)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 60)
    line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else "{}"
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return {"error": p.stderr[-2000:]}


def sdk_client(
    a, fake_port: int, model: str, n: int, warmup: int, core: int | None
) -> dict:
    cmd = pin(core) + [
        PY,
        os.path.join(HERE, "sdk_client.py"),
        "--base-url",
        f"http://127.0.0.1:{fake_port}/v1",
        "--model",
        model,
        "-n",
        str(n),
        "--warmup",
        str(warmup),
        "--uvloop",
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return json.loads(p.stdout.strip().splitlines()[-1])


def med(vals):
    vals = [v for v in vals if v is not None]
    return round(statistics.median(vals), 3) if vals else None


def g(d, path):
    for k in path.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


class Suite:
    def __init__(self, a):
        self.a = a
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        self.outdir = a.outdir or os.path.join(HERE, "results", f"{a.name}-{stamp}")
        os.makedirs(self.outdir, exist_ok=True)
        self.runs = open(os.path.join(self.outdir, "runs.jsonl"), "a")
        self.summary: dict = {"meta": self.meta()}
        self.n = 0

    def meta(self):
        def ver(mod):
            try:
                from importlib.metadata import version

                return version(mod)
            except Exception:
                return None

        cpu = ""
        try:
            cpu = next(
                line.split(":", 1)[1].strip()
                for line in open("/proc/cpuinfo")
                if line.startswith("model name")
            )
        except Exception:
            pass
        return {
            "when_utc": datetime.datetime.now(datetime.UTC).isoformat(
                timespec="seconds"
            ),
            "python": sys.version.split()[0],
            "cpu": cpu,
            "cores": os.cpu_count(),
            "kernel": os.uname().release,
            "relay_cmd": self.a.relay_cmd,
            "pinning": None
            if self.a.no_pin
            else {"relay_core": self.a.relay_core, "harness_core": self.a.harness_core},
            "versions": {
                m: ver(m)
                for m in (
                    "openai",
                    "anthropic",
                    "fastapi",
                    "starlette",
                    "sse-starlette",
                    "uvicorn",
                    "uvloop",
                    "httptools",
                    "aiohttp",
                    "pydantic",
                    "httpx2",
                    "httpx",
                )
            },
        }

    def record(self, scenario: str, run: int, data: dict):
        data = {"scenario": scenario, "run": run, **data}
        self.runs.write(json.dumps(data) + "\n")
        self.runs.flush()
        print(f"  [{scenario} run {run}] " + short(data), flush=True)
        return data

    def tag(self, s):
        self.n += 1
        return f"{s}-{self.n}"

    # ------------------------------------------------------------------ scenarios
    def a_overhead(self):
        a = self.a
        rows = []
        prompt = "hello [fake?tokens=20&delay_ms=5]"
        for r in range(a.runs):
            with Procs(a, self.outdir, self.tag("a")) as p:
                loadgen(a, p.url(prompt), "-c", "1", "-n", "5")  # warm-up
                relay = loadgen(
                    a, p.url(prompt), "-c", "1", "-n", "50", pid=p.relay_pid
                )
                direct = sdk_client(
                    a,
                    p.fake_port,
                    "gpt-4o-mini?tokens=20&delay_ms=5",
                    50,
                    5,
                    a.relay_core,
                )
            row = {
                "relay": relay,
                "direct_sdk": direct,
                "overhead_ms_p50": round(
                    relay["ttft_ms"]["p50"] - direct["ttft_ms"]["p50"], 3
                ),
                "overhead_ms_p95": round(
                    relay["ttft_ms"]["p95"] - direct["ttft_ms"]["p95"], 3
                ),
                "overhead_ms_p99": round(
                    relay["ttft_ms"]["p99"] - direct["ttft_ms"]["p99"], 3
                ),
            }
            rows.append(self.record("a", r, row))
        self.summary["a_overhead"] = {
            "relay_ttft_ms_p50": med([g(x, "relay.ttft_ms.p50") for x in rows]),
            "relay_ttft_ms_p95": med([g(x, "relay.ttft_ms.p95") for x in rows]),
            "relay_ttft_ms_p99": med([g(x, "relay.ttft_ms.p99") for x in rows]),
            "direct_sdk_ttft_ms_p50": med(
                [g(x, "direct_sdk.ttft_ms.p50") for x in rows]
            ),
            "direct_sdk_ttft_ms_p95": med(
                [g(x, "direct_sdk.ttft_ms.p95") for x in rows]
            ),
            "direct_sdk_ttft_ms_p99": med(
                [g(x, "direct_sdk.ttft_ms.p99") for x in rows]
            ),
            "overhead_ms_p50": med([x["overhead_ms_p50"] for x in rows]),
            "overhead_ms_p95": med([x["overhead_ms_p95"] for x in rows]),
            "overhead_ms_p99": med([x["overhead_ms_p99"] for x in rows]),
            "runs": len(rows),
        }

    def a2_burst_ttft(self):
        """(a') TTFT of a long answer the provider sends at once: the first token must
        not wait behind the rest of it."""
        a = self.a
        rows = []
        prompt = f"burst [fake?tokens={a.throughput_tokens}&delay_ms=0]"
        for r in range(a.runs):
            with Procs(a, self.outdir, self.tag("a2")) as p:
                loadgen(a, p.url(prompt), "-c", "1", "-n", "5")  # warm-up
                res = loadgen(
                    a,
                    p.url(prompt),
                    "-c",
                    "1",
                    "-n",
                    str(a.a2_requests),
                    pid=p.relay_pid,
                )
            rows.append(self.record("a2", r, {"relay": res}))
        self.summary["a2_burst_ttft"] = {
            "tokens": a.throughput_tokens,
            "requests": a.a2_requests,
            "runs": len(rows),
            "completed": [g(x, "relay.streams_ok") for x in rows],
            "ttft_ms_p50": med([g(x, "relay.ttft_ms.p50") for x in rows]),
            "ttft_ms_p99": med([g(x, "relay.ttft_ms.p99") for x in rows]),
            "headers_ms_p50": med([g(x, "relay.headers_ms.p50") for x in rows]),
        }

    def r_start_burst(self):
        """(r) --r-streams starts within --r-ramp-s, each a paced answer slow enough
        that the tokens cost little: TTFT measures what a start costs."""
        a = self.a
        n = a.r_streams
        opts = f"tokens={a.r_tokens}&delay_ms={a.r_delay_ms}"
        env = dict(pair.split("=", 1) for pair in a.r_relay_env.split())
        rows = []
        for r in range(a.runs):
            with Procs(a, self.outdir, self.tag("r"), env=env) as p:
                loadgen(a, p.url("warm [fake?tokens=5]"), "-c", "1")
                time.sleep(0.3)
                res = loadgen(
                    a,
                    p.url(f"burst [fake?{opts}]"),
                    "-c",
                    str(n),
                    "--ramp-s",
                    str(a.r_ramp_s),
                    "--rss-interval",
                    "0.1",
                    pid=p.relay_pid,
                    timeout=a.c_timeout,
                )
            start, peak = g(res, "server.rss_start_kb"), g(res, "server.rss_peak_kb")
            row = {
                "streams": n,
                "loadgen": res,
                "time_v": p.time_v(),
                "rss_per_stream_kb": round((peak - start) / n, 2)
                if start and peak
                else None,
            }
            rows.append(self.record("r", r, row))
        L = "loadgen."
        self.summary["r_start_burst"] = {
            "runs": len(rows),
            "streams": n,
            "ramp_s": a.r_ramp_s,
            "tokens": a.r_tokens,
            "delay_ms": a.r_delay_ms,
            "relay_env": env,
            "completed_pct": med([100.0 * g(x, L + "streams_ok") / n for x in rows]),
            "failures": [g(x, L + "failures") for x in rows],
            "ttft_ms_p50": med([g(x, L + "ttft_ms.p50") for x in rows]),
            "ttft_ms_p99": med([g(x, L + "ttft_ms.p99") for x in rows]),
            "rss_start_kb": med([g(x, L + "server.rss_start_kb") for x in rows]),
            "rss_peak_kb": med([g(x, L + "server.rss_peak_kb") for x in rows]),
            "rss_per_stream_kb": med([x["rss_per_stream_kb"] for x in rows]),
            "server_cpu_s": med([g(x, L + "server.cpu_s") for x in rows]),
        }

    def b_throughput(self):
        a = self.a
        rows = []
        opts = f"tokens={a.throughput_tokens}"
        with Procs(a, self.outdir, self.tag("b")) as p:
            loadgen(a, p.url("warm [fake?tokens=500]"), "-c", "1")
            for r in range(a.runs_b):
                rows.append(
                    self.record(
                        "b",
                        r,
                        {
                            "relay": loadgen(
                                a,
                                p.url(f"go [fake?{opts}]"),
                                "-c",
                                "1",
                                pid=p.relay_pid,
                            )
                        },
                    )
                )
            sdk = sdk_client(
                a, p.fake_port, f"gpt-4o-mini?{opts}", a.runs_b, 1, a.relay_core
            )
            self.record("b", -1, {"direct_sdk": sdk})
            raw = [
                loadgen(
                    a,
                    f"http://127.0.0.1:{p.fake_port}/v1/chat/completions",
                    "--mode",
                    "openai",
                    "--model",
                    f"gpt-4o-mini?{opts}",
                    "-c",
                    "1",
                )
                for _ in range(a.runs_b)
            ]
            self.record("b", -2, {"harness_alone": raw})
        # Provider tokens per second of the stream (request start to done): a relay
        # may carry several tokens per SSE event, so events are not tokens.
        tps = [
            round(
                a.throughput_tokens / (g(x, "relay.stream_duration_ms.p50") / 1000), 1
            )
            for x in rows
            if g(x, "relay.stream_duration_ms.p50")
        ]
        cpu = [g(x, "relay.server.cpu_s") for x in rows]
        toks = [a.throughput_tokens * (g(x, "relay.streams_ok") or 0) for x in rows]
        self.summary["b_throughput"] = {
            "tokens": a.throughput_tokens,
            "runs": len(rows),
            "relay_tokens_per_s": med(tps),
            "relay_tokens_per_s_all": tps,
            "relay_cpu_us_per_token": med(
                [c / t * 1e6 for c, t in zip(cpu, toks) if c and t]
            ),
            "relay_ttft_ms": med([g(x, "relay.ttft_ms.p50") for x in rows]),
            "direct_sdk_tokens_per_s": g(sdk, "stream_tokens_per_s.p50"),
            "direct_sdk_cpu_us_per_token": sdk.get("client_cpu_us_per_token"),
            "harness_alone_tokens_per_s": med([x.get("tokens_per_s") for x in raw]),
            "completed": sum(1 for x in rows if g(x, "relay.streams_ok") == 1),
        }

    def c_concurrency(self, harness_alone=False):
        a = self.a
        key = "h_harness_alone" if harness_alone else "c_concurrency"
        self.summary[key] = {}
        opts = f"tokens={a.c_tokens}&delay_ms={a.c_delay_ms}"
        for level in a.levels:
            rows = []
            for r in range(a.runs):
                with Procs(
                    a,
                    self.outdir,
                    self.tag(key[0] + str(level)),
                    relay=not harness_alone,
                ) as p:
                    if harness_alone:
                        p.fake_reset()
                        res = loadgen(
                            a,
                            f"http://127.0.0.1:{p.fake_port}/v1/chat/completions",
                            "--mode",
                            "openai",
                            "--model",
                            f"gpt-4o-mini?{opts}",
                            "-c",
                            str(level),
                            pid=p.fake.pid,
                            timeout=a.c_timeout,
                            *ramp(a),
                        )
                        row = {"level": level, "loadgen": res}
                    else:
                        loadgen(a, p.url("warm [fake?tokens=5]"), "-c", "1")
                        p.fake_reset()
                        res = loadgen(
                            a,
                            p.url(f"hello [fake?{opts}]"),
                            "-c",
                            str(level),
                            pid=p.relay_pid,
                            timeout=a.c_timeout,
                            *ramp(a),
                        )
                        fs = p.fake_stats()
                        row = {
                            "level": level,
                            "loadgen": res,
                            "fake": {
                                k: fs.get(k)
                                for k in ("cpu_s_since_reset", "streams", "tokens_sent")
                            },
                        }
                if not harness_alone:
                    row["time_v"] = p.time_v()
                rows.append(self.record(key[0], r, row))
            L = "loadgen."
            self.summary[key][str(level)] = {
                "runs": len(rows),
                "completed_pct": med(
                    [100.0 * g(x, L + "streams_ok") / level for x in rows]
                ),
                "failed": [g(x, L + "streams_failed") for x in rows],
                "failures": [g(x, L + "failures") for x in rows],
                "ttft_ms_p50": med([g(x, L + "ttft_ms.p50") for x in rows]),
                "ttft_ms_p99": med([g(x, L + "ttft_ms.p99") for x in rows]),
                "gap_ms_p50": med([g(x, L + "gap_ms.p50") for x in rows]),
                "gap_ms_p99": med([g(x, L + "gap_ms.p99") for x in rows]),
                "stream_max_gap_ms_p50": med(
                    [g(x, L + "stream_max_gap_ms.p50") for x in rows]
                ),
                "stream_duration_ms_p50": med(
                    [g(x, L + "stream_duration_ms.p50") for x in rows]
                ),
                "stream_duration_ms_p99": med(
                    [g(x, L + "stream_duration_ms.p99") for x in rows]
                ),
                "tokens_per_s": med([g(x, L + "tokens_per_s") for x in rows]),
                # The slowest 1 % of streams, in provider tokens per second (events
                # are not tokens when a relay coalesces): demand is 1000 / delay_ms.
                "slow_stream_tokens_per_s": med(
                    [
                        a.c_tokens / (g(x, L + "stream_duration_ms.p99") / 1000)
                        for x in rows
                        if g(x, L + "stream_duration_ms.p99")
                    ]
                ),
                "chars_total": med([g(x, L + "chars_total") for x in rows]),
                "wall_s": med([g(x, L + "wall_s") for x in rows]),
                "server_rss_start_kb": med(
                    [g(x, L + "server.rss_start_kb") for x in rows]
                ),
                "server_rss_peak_kb": med(
                    [g(x, L + "server.rss_peak_kb") for x in rows]
                ),
                "server_cpu_s": med([g(x, L + "server.cpu_s") for x in rows]),
                "time_v_max_rss_kb": med([g(x, "time_v.max_rss_kb") for x in rows]),
                "fake_cpu_s": med([g(x, "fake.cpu_s_since_reset") for x in rows]),
                "loadgen_cpu_s": med([g(x, L + "loadgen.cpu_s") for x in rows]),
                "loadgen_loop_lag_ms_p99": med(
                    [g(x, L + "loadgen.loop_lag_ms.p99") for x in rows]
                ),
            }

    def d_memory(self):
        a = self.a
        self.summary["d_memory"] = {}
        for label, opts in (
            ("1k_chars", "pattern=chars&token_chars=4&tokens=250"),
            ("1M_chars", "pattern=chars&token_chars=4&tokens=250000"),
        ):
            rows = []
            for r in range(a.runs):
                with Procs(a, self.outdir, self.tag("d" + label)) as p:
                    loadgen(a, p.url("warm [fake?tokens=50]"), "-c", "1")
                    time.sleep(0.3)
                    res = loadgen(
                        a,
                        p.url(f"go [fake?{opts}]"),
                        "-c",
                        "1",
                        "--rss-interval",
                        "0.01",
                        pid=p.relay_pid,
                        timeout=300,
                    )
                row = {"size": label, "loadgen": res, "time_v": p.time_v()}
                rows.append(self.record("d", r, row))
            self.summary["d_memory"][label] = {
                "runs": len(rows),
                "chars": med([g(x, "loadgen.chars_total") for x in rows]),
                "completed": sum(1 for x in rows if g(x, "loadgen.streams_ok") == 1),
                "rss_before_kb": med(
                    [g(x, "loadgen.server.rss_start_kb") for x in rows]
                ),
                "rss_peak_kb": med([g(x, "loadgen.server.rss_peak_kb") for x in rows]),
                "rss_growth_kb": med(
                    [
                        g(x, "loadgen.server.rss_peak_kb")
                        - g(x, "loadgen.server.rss_start_kb")
                        for x in rows
                        if g(x, "loadgen.server.rss_peak_kb")
                    ]
                ),
                "rss_end_kb": med([g(x, "loadgen.server.rss_end_kb") for x in rows]),
                "time_v_max_rss_kb": med([g(x, "time_v.max_rss_kb") for x in rows]),
                "tokens_per_s": med([g(x, "loadgen.tokens_per_s") for x in rows]),
                "wall_s": med([g(x, "loadgen.wall_s") for x in rows]),
            }

    def e_disconnect(self):
        a = self.a
        rows = []
        for r in range(a.runs):
            with Procs(a, self.outdir, self.tag("e")) as p:
                loadgen(a, p.url("warm [fake?tokens=5]"), "-c", "1")
                p.fake_reset()
                res = loadgen(
                    a,
                    p.url("hello [fake?tokens=500&delay_ms=20]"),
                    "-c",
                    "20",
                    "--disconnect-after",
                    "10",
                    pid=p.relay_pid,
                )
                time.sleep(2.0)
                fs = p.fake_stats(recent=40)
                still_active_after_2s = fs["streams"]["active"]
                streams = [x for x in fs["recent"]]
                sent = sorted(x["sent"] for x in streams)
                row = {
                    "loadgen": {
                        k: res.get(k)
                        for k in ("streams_ok", "streams_hungup", "failures")
                    },
                    "upstream_outcomes": fs["streams"],
                    "upstream_tokens_sent_per_stream": sent,
                    "upstream_active_2s_after_hangup": still_active_after_2s,
                }
            rows.append(self.record("e", r, row))
        self.summary["e_disconnect"] = {
            "runs": len(rows),
            "streams_per_run": 20,
            "client_hangs_up_after_tokens": 10,
            "upstream_closed_by_relay": [
                g(x, "upstream_outcomes.client_disconnected") for x in rows
            ],
            "upstream_ran_to_completion": [
                g(x, "upstream_outcomes.completed") for x in rows
            ],
            "upstream_tokens_sent_median": med(
                [med(x["upstream_tokens_sent_per_stream"]) for x in rows]
            ),
            "upstream_tokens_sent_max": max(
                (max(x["upstream_tokens_sent_per_stream"] or [0]) for x in rows),
                default=None,
            ),
        }

    def o_open_streams(self):
        a = self.a
        n = a.open_streams
        rows = []
        for r in range(a.runs):
            with Procs(a, self.outdir, self.tag("o")) as p:
                loadgen(a, p.url("warm [fake?tokens=50]"), "-c", "1")
                time.sleep(0.3)
                res = loadgen(
                    a,
                    p.url("hold [fake?tokens=10&delay_ms=1000]"),
                    "-c",
                    str(n),
                    "--rss-interval",
                    "0.2",
                    *ramp(a),
                    pid=p.relay_pid,
                    timeout=120,
                )
            start, peak = g(res, "server.rss_start_kb"), g(res, "server.rss_peak_kb")
            row = {
                "streams": n,
                "loadgen": res,
                "time_v": p.time_v(),
                "rss_per_stream_kb": round((peak - start) / n, 2)
                if start and peak
                else None,
            }
            rows.append(self.record("o", r, row))
        self.summary["o_open_streams"] = {
            "runs": len(rows),
            "streams": n,
            "completed": [g(x, "loadgen.streams_ok") for x in rows],
            "rss_start_kb": med([g(x, "loadgen.server.rss_start_kb") for x in rows]),
            "rss_peak_kb": med([g(x, "loadgen.server.rss_peak_kb") for x in rows]),
            "rss_per_stream_kb": med([x["rss_per_stream_kb"] for x in rows]),
            "server_cpu_s": med([g(x, "loadgen.server.cpu_s") for x in rows]),
        }

    def f_fidelity(self):
        a = self.a
        opts = "pattern=tricky&tokens=500&delay_ms=1"
        exp = os.path.join(self.outdir, "tricky-expected.json")
        with open(exp, "w") as f:
            f.write(
                subprocess.run(
                    [PY, os.path.join(HERE, "fake_provider.py"), "--print-text", opts],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
        out = {}
        with Procs(a, self.outdir, self.tag("f")) as p:
            for norm in (False, True):
                extra = ["--expect-file", exp] + (
                    ["--expect-normalize-newlines"] if norm else []
                )
                res = loadgen(a, p.url(f"hi [fake?{opts}]"), "-c", "5", *extra)
                out["normalized_cr" if norm else "exact"] = res.get("text_check")
        self.record("f", 0, out)
        self.summary["f_fidelity"] = out


def ramp(a) -> list[str]:
    return ["--ramp-s", str(a.ramp_s)] if a.ramp_s else []


def short(d: dict) -> str:
    s = json.dumps(d)
    return s if len(s) < 400 else s[:400] + "..."


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--only", default="a,b,h,c,d,e,f")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--runs-b", type=int, default=5)
    ap.add_argument("--levels", default="100,500,1000")
    ap.add_argument("--c-tokens", type=int, default=200)
    ap.add_argument("--c-delay-ms", type=float, default=20)
    ap.add_argument("--c-timeout", type=float, default=240)
    ap.add_argument("--throughput-tokens", type=int, default=5000)
    ap.add_argument(
        "--ramp-s",
        type=float,
        default=2.0,
        help="spread the starts of (c) and (o) over this long",
    )
    ap.add_argument("--open-streams", type=int, default=1000)
    ap.add_argument(
        "--a2-requests", type=int, default=50, help="(a') sequential requests per run"
    )
    ap.add_argument("--r-streams", type=int, default=300)
    ap.add_argument("--r-ramp-s", type=float, default=2.0)
    ap.add_argument("--r-tokens", type=int, default=10)
    ap.add_argument("--r-delay-ms", type=float, default=1000)
    ap.add_argument(
        "--r-relay-env",
        default="",
        help="NAME=value pairs (space-separated) for the relay in (r) only, e.g. limits",
    )
    ap.add_argument("--name", default="peer")
    ap.add_argument("--outdir")
    ap.add_argument(
        "--relay-cmd",
        default="uvicorn backend:app --app-dir {here}/peer_fastapi --host 127.0.0.1 "
        "--port {port} --log-level warning",
        help="command for the relay; {port} {fake_port} {here} {venv_bin} are filled in; it gets "
        "OPENAI_BASE_URL / OPENAI_API_KEY / OPENAI_MODEL pointing at the fake provider",
    )
    ap.add_argument(
        "--ready-path",
        default="/openapi.json",
        help="GET path that answers 200 once the relay is up",
    )
    ap.add_argument("--stream-path", default="/chat/stream")
    ap.add_argument("--prompt-param", default="prompt")
    ap.add_argument(
        "--loadgen-extra",
        default="",
        help='extra loadgen.py arguments for requests to the relay, e.g. "--cookie sessionid=..."',
    )
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--relay-core", type=int, default=0)
    ap.add_argument("--harness-core", type=int, default=1)
    a = ap.parse_args()
    a.levels = [int(x) for x in a.levels.split(",") if x]
    if a.no_pin:
        a.relay_core = a.harness_core = None
    s = Suite(a)
    print(f"results -> {s.outdir}", flush=True)
    steps = {
        "a": s.a_overhead,
        "a2": s.a2_burst_ttft,
        "r": s.r_start_burst,
        "b": s.b_throughput,
        "h": lambda: s.c_concurrency(harness_alone=True),
        "c": s.c_concurrency,
        "d": s.d_memory,
        "e": s.e_disconnect,
        "f": s.f_fidelity,
        "o": s.o_open_streams,
    }
    for k in a.only.split(","):
        t0 = time.time()
        print(f"== scenario {k}", flush=True)
        steps[k]()
        print(f"== scenario {k} took {time.time() - t0:.1f}s", flush=True)
        with open(os.path.join(s.outdir, "summary.json"), "w") as f:
            json.dump(s.summary, f, indent=1)
    print(json.dumps(s.summary, indent=1))


if __name__ == "__main__":
    main()
