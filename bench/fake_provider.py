#!/usr/bin/env python3
"""Fake LLM provider speaking the OpenAI and Anthropic streaming wire formats.

Serves, on 127.0.0.1 only:

  POST /v1/chat/completions   OpenAI chat completions (stream=true: `data: {chunk}` lines,
                              reasoning chunks first when asked, optional usage chunk,
                              `data: [DONE]`; stream=false: one JSON body)
  POST /v1/messages           Anthropic messages (stream=true: message_start, content_block_start,
                              ping, content_block_delta*, content_block_stop (a thinking block
                              first when asked, then the text block), message_delta,
                              message_stop; stream=false: one JSON body)
  GET  /stats                 JSON counters (requests, statuses, streams completed / client
                              disconnected / errored / aborted, tokens, bytes, CPU, RSS) and the
                              most recent streams (?recent=N, default 20, max 1000), each
                              with the output limits, the thinking asked for and the
                              system prompt, sampling options, stop sequences and
                              messages it was sent
  POST /stats/reset           zero the counters and the fail-first counters
  GET  /health                "ok"

Behaviour is set per request by options, merged in this order (later wins):

  1. environment: FAKE_<OPTION>=value (e.g. FAKE_TOKENS=200) or FAKE_OPTIONS="tokens=200&delay_ms=20"
  2. command line: --defaults "tokens=200&delay_ms=20"
  3. a directive anywhere in the last user message: [fake?tokens=200&delay_ms=20]
  4. the model name: "gpt-4o-mini?tokens=200&delay_ms=20" (the part before '?' is echoed back)
  5. headers: X-Fake-Options: tokens=200&delay_ms=20, or one header per option (X-Fake-Tokens: 200)

Options (see OPTION_DOC below or `fake_provider.py --help-options`).

Only the standard library and aiohttp are needed; uvloop is used when importable.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import hashlib
import heapq
import itertools
import json
import math
import os
import random
import re
import resource
import sys
import time
import urllib.parse
import uuid

from aiohttp import web

OPTION_DOC = {
    "tokens": ("20", "number of content tokens to stream"),
    "reasoning": (
        "0",
        "number of reasoning tokens streamed before the content tokens (OpenAI: delta"
        " chunks of reasoning_field; Anthropic: a thinking block before the text block),"
        " paced like them; usage counts them only as reasoning_tokens says",
    ),
    "reasoning_field": (
        "reasoning_content",
        "OpenAI delta key of the reasoning: reasoning_content (DeepSeek, vLLM, llama.cpp)"
        " | reasoning (OpenRouter, Ollama, newer vLLM)",
    ),
    "ttft_ms": (
        "0",
        "delay before the first token, reasoning or content (after headers and the"
        " role/start events)",
    ),
    "headers_delay_ms": ("0", "delay before the response headers are sent"),
    "delay_ms": (
        "0",
        "delay between tokens; tokens are scheduled on an absolute clock (no drift)",
    ),
    "jitter_ms": (
        "0",
        "uniform random +/- jitter added to each inter-token delay (seeded, see seed)",
    ),
    "seed": ("1", "seed for jitter"),
    "pattern": ("words", "words | counter | tricky | fixed | chars"),
    "text": ("x", "token text for pattern=fixed (URL-encoded in option strings)"),
    "token_chars": ("4", "token length for pattern=chars"),
    "fail_first": (
        "0",
        "answer the first N requests of this key with fail_status (then succeed)",
    ),
    "fail_status": ("429", "status for fail_first (429, 500, 503, 529, ...)"),
    "retry_after": (
        "1",
        "Retry-After header (seconds) on fail_first/status failures; '' for none",
    ),
    "retry_after_ms": (
        "",
        "retry-after-ms header (OpenAI SDK reads it first); '' for none",
    ),
    "should_retry": (
        "",
        "x-should-retry header value on failures ('true' / 'false'); '' for none",
    ),
    "key": (
        "",
        "counter key for fail_first (default: endpoint + the request's option string)",
    ),
    "status": (
        "",
        "always answer with this HTTP status (e.g. 500) and a provider-style error body",
    ),
    "error_after": (
        "-1",
        "after K tokens send a mid-stream error event, then end the response",
    ),
    "error_type": (
        "",
        "error type in the mid-stream error (default server_error / overloaded_error);"
        " 'malformed' sends an event whose data is not JSON instead",
    ),
    "abort_after": (
        "-1",
        "after K tokens drop the TCP connection (no terminating chunk, no [DONE])",
    ),
    "stall_after": ("-1", "after K tokens pause for stall_ms (upstream stall)"),
    "stall_ms": ("0", "length of the stall"),
    "split": (
        "0",
        "1: write every event in two TCP writes, split inside a multi-byte character",
    ),
    "split_ms": ("1", "pause between the two halves when split=1"),
    "coalesce": (
        "1",
        "with delay_ms=0 and jitter_ms=0, batch events into ~16 KiB writes (0: one write per event)",
    ),
    "ascii": ("0", "1: JSON-escape non-ASCII (\\uXXXX) instead of raw UTF-8"),
    "usage": (
        "both",
        "where usage is reported: both (Anthropic: message_start and the cumulative"
        " message_delta; OpenAI: the usage chunk when include_usage asks), delta"
        " (Anthropic: message_start says input_tokens 0, as some gateways do; the"
        " counts come in message_delta), start (Anthropic: message_delta has"
        " output_tokens only), none (no usage at all; OpenAI ignores include_usage)",
    ),
    "cached_tokens": (
        "0",
        "prompt tokens read from the cache: Anthropic cache_read_input_tokens (beside"
        " input_tokens), OpenAI prompt_tokens_details.cached_tokens (within prompt_tokens)",
    ),
    "cache_write_tokens": (
        "0",
        "prompt tokens written to the cache: Anthropic cache_creation_input_tokens",
    ),
    "reasoning_tokens": (
        "0",
        "reasoning tokens counted in the output: OpenAI completion_tokens_details."
        "reasoning_tokens, Anthropic output_tokens_details.thinking_tokens (both"
        " within the output count)",
    ),
}

WORDS = (
    " The",
    " quick",
    " brown",
    " fox",
    " jumps",
    " over",
    " the",
    " lazy",
    " dog",
    ".",
    " Streaming",
    " tokens",
    " arrive",
    " one",
    " by",
    " one",
    ",",
    " as",
    " they",
    " are",
    " generated",
    " by",
    " the",
    " model",
    ".",
    "\n\n",
    "Then",
    " it",
    " stops",
    ".",
)

# Tokens that break naive relays and naive SSE parsers.
TRICKY = (
    "Hello",
    " world",
    "\n",
    "line1\nline2",
    "\r\n",
    "crlf\r\nend",
    "\r",
    "lone\rcr",
    " ",
    "  two leading spaces",
    ":colon at line start",
    "data: not a field",
    "event: fake",
    "\n\n",
    "id: 7",
    "retry: 1",
    "\u00e9",
    "\u65e5\u672c\u8a9e",
    "\U0001f389",
    "\U0001f469\u200d\U0001f4bb",
    "e\u0301",
    "\u2028",
    "\u0085",
    "\t",
    "tab\there",
    "\\",
    '"quoted"',
    '{"json": true}',
    "[DONE]",
    "trailing space ",
    "\u00a0nbsp",
    "\ufeffbom",
    "\u0645\u0631\u062d\u0628\u0627",
    "\U00010348",
)

ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def default_options() -> dict[str, str]:
    opts = {k: v[0] for k, v in OPTION_DOC.items()}
    env_all = os.environ.get("FAKE_OPTIONS")
    for k in OPTION_DOC:
        v = os.environ.get("FAKE_" + k.upper())
        if v is not None:
            opts[k] = v
    if env_all:
        opts.update(parse_option_string(env_all))
    return opts


def parse_option_string(s: str) -> dict[str, str]:
    out = {}
    for k, v in urllib.parse.parse_qsl(s, keep_blank_values=True):
        k = k.strip().lower().replace("-", "_")
        if k not in OPTION_DOC:
            raise ValueError(f"unknown fake option {k!r}")
        out[k] = v
    return out


class Opts:
    __slots__ = tuple(OPTION_DOC) + ("raw",)

    def __init__(self, d: dict[str, str], raw: str):
        self.raw = raw
        self.tokens = int(d["tokens"])
        self.ttft_ms = float(d["ttft_ms"])
        self.headers_delay_ms = float(d["headers_delay_ms"])
        self.delay_ms = float(d["delay_ms"])
        self.jitter_ms = float(d["jitter_ms"])
        self.seed = int(d["seed"])
        self.pattern = d["pattern"]
        if self.pattern not in ("words", "counter", "tricky", "fixed", "chars"):
            raise ValueError(f"unknown pattern {self.pattern!r}")
        self.text = d["text"]
        self.token_chars = int(d["token_chars"])
        self.fail_first = int(d["fail_first"])
        self.fail_status = int(d["fail_status"])
        self.retry_after = d["retry_after"]
        self.retry_after_ms = d["retry_after_ms"]
        self.should_retry = d["should_retry"]
        self.key = d["key"]
        self.status = int(d["status"]) if d["status"] else 0
        self.error_after = int(d["error_after"])
        self.error_type = d["error_type"]
        self.abort_after = int(d["abort_after"])
        self.stall_after = int(d["stall_after"])
        self.stall_ms = float(d["stall_ms"])
        self.split = d["split"] not in ("", "0", "false")
        self.split_ms = float(d["split_ms"])
        self.coalesce = d["coalesce"] not in ("", "0", "false")
        self.ascii = d["ascii"] not in ("", "0", "false")
        self.usage = d["usage"]
        if self.usage not in ("both", "delta", "start", "none"):
            raise ValueError(f"unknown usage {self.usage!r}")
        self.cached_tokens = int(d["cached_tokens"])
        self.cache_write_tokens = int(d["cache_write_tokens"])
        self.reasoning_tokens = int(d["reasoning_tokens"])
        self.reasoning = int(d["reasoning"])
        self.reasoning_field = d["reasoning_field"]
        if self.reasoning_field not in ("reasoning_content", "reasoning"):
            raise ValueError(f"unknown reasoning_field {self.reasoning_field!r}")
        if self.tokens < 0 or self.tokens > 10_000_000:
            raise ValueError("tokens out of range")
        if self.reasoning < 0 or self.reasoning > 10_000_000:
            raise ValueError("reasoning out of range")


def token_at(opts: Opts, i: int) -> str:
    p = opts.pattern
    if p == "words":
        return WORDS[i % len(WORDS)]
    if p == "counter":
        return f" t{i}"
    if p == "tricky":
        return TRICKY[i % len(TRICKY)]
    if p == "fixed":
        return opts.text
    return "x" * opts.token_chars  # chars


def expected_text(opts: Opts, limit: int | None = None) -> str:
    n = opts.tokens if limit is None else min(opts.tokens, limit)
    return "".join(token_at(opts, i) for i in range(n))


# The reasoning's steps, in turn: a line end and non-ASCII text within the first four
# tokens, so that a relay of reasoning meets them as early as one of the answer's.
REASONING_STEPS = (
    "think.",
    "check the premise.\n",
    "weigh the caf\u00e9's r\u00e9sum\u00e9.",
    "so far so good \U0001f914",
    "conclude.",
)


def reasoning_at(i: int) -> str:
    """Reasoning token `i`: "Step 1: think.", then " Step 2: check the premise.\\n", ..."""
    step = f"Step {i + 1}: {REASONING_STEPS[i % len(REASONING_STEPS)]}"
    return step if i == 0 else " " + step


def expected_reasoning(opts: Opts) -> str:
    return "".join(reasoning_at(i) for i in range(opts.reasoning))


def reasoning_signature(opts: Opts) -> str:
    """The Anthropic thinking block's signature: base64 of the reasoning's SHA-256."""
    digest = hashlib.sha256(expected_reasoning(opts).encode()).digest()
    return base64.b64encode(digest).decode()


def _content_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


DIRECTIVE_RE = re.compile(r"\[fake\?([^\]\s]*)\]")


class Stats:
    def __init__(self):
        self.reset()

    def reset(self):
        self.started_at = time.time()
        self.cpu0 = _cpu_s()
        self.requests = collections.Counter()
        self.statuses = collections.Counter()
        self.outcomes = collections.Counter()
        self.streams_started = 0
        self.active = 0
        self.peak_active = 0
        self.tokens_sent = 0
        self.bytes_sent = 0
        self.retries_seen = 0
        self.fail_counts: dict[str, int] = {}
        self.recent: collections.deque = collections.deque(maxlen=1000)

    def snapshot(self, recent: int) -> dict:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "uptime_s": round(time.time() - self.started_at, 3),
            "cpu_s_since_reset": round(_cpu_s() - self.cpu0, 3),
            "rss_kb": _rss_kb(),
            "max_rss_kb": ru.ru_maxrss,
            "requests": dict(self.requests),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "streams": {
                "started": self.streams_started,
                "active": self.active,
                "peak_active": self.peak_active,
                "completed": self.outcomes["completed"],
                "client_disconnected": self.outcomes["client_disconnected"],
                "error_event": self.outcomes["error_event"],
                "aborted": self.outcomes["aborted"],
                "server_exception": self.outcomes["server_exception"],
            },
            "tokens_sent": self.tokens_sent,
            "bytes_sent": self.bytes_sent,
            "retries_seen": self.retries_seen,
            "timer_fires": TICKER.fires,
            "recent": list(itertools.islice(reversed(self.recent), recent)),
        }


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _rss_kb() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


STATS = Stats()
BASE_OPTS: dict[str, str] = {}
API_KEY: str | None = None


class ClientGone(Exception):
    pass


class Reject(Exception):
    """Carries an error response out of request parsing."""

    def __init__(self, resp: web.Response):
        super().__init__(resp.status)
        self.resp = resp


def _dumps(obj, ascii_: bool = False) -> str:
    return json.dumps(obj, ensure_ascii=ascii_, separators=(",", ":"))


# ----------------------------------------------------------------------------- errors

OPENAI_ERRORS = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Forbidden.",
    ),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model does not exist or you do not have access to it.",
    ),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests (fake provider). Please try again in 1s.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: (
        "server_error",
        "service_unavailable",
        "The engine is currently overloaded, please try again later.",
    ),
}
ANTHROPIC_ERRORS = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: (
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit (fake provider).",
    ),
    500: ("api_error", "Internal server error"),
    503: ("api_error", "Service unavailable"),
    529: ("overloaded_error", "Overloaded"),
}


def error_response(
    api: str, status: int, opts: Opts | None, message: str | None = None
) -> web.Response:
    headers = {}
    if (
        opts is not None
    ):  # an injected failure: add the retry headers a real provider sends
        if opts.retry_after:
            headers["Retry-After"] = opts.retry_after
        if opts.retry_after_ms:
            headers["retry-after-ms"] = opts.retry_after_ms
        if opts.should_retry:
            headers["x-should-retry"] = opts.should_retry
    if api == "anthropic":
        etype, emsg = ANTHROPIC_ERRORS.get(status, ("api_error", f"HTTP {status}"))
        body = {
            "type": "error",
            "error": {"type": etype, "message": message or emsg},
            "request_id": "req_fake_" + uuid.uuid4().hex[:20],
        }
        headers["request-id"] = body["request_id"]
    else:
        etype, code, emsg = OPENAI_ERRORS.get(
            status, ("server_error", None, f"HTTP {status}")
        )
        body = {
            "error": {
                "message": message or emsg,
                "type": etype,
                "param": None,
                "code": code,
            }
        }
        headers["x-request-id"] = "req_" + uuid.uuid4().hex
    STATS.statuses[status] += 1
    reason = {529: "Overloaded"}.get(status)
    return web.Response(
        status=status,
        reason=reason,
        text=_dumps(body),
        content_type="application/json",
        headers=headers,
    )


# ----------------------------------------------------------------------------- request handling


async def _parse(request: web.Request, api: str):
    """Return (body, opts, model_echo) or raise an error response."""
    STATS.requests[api] += 1
    STATS.requests["total"] += 1
    try:
        rc = int(request.headers.get("x-stainless-retry-count", "0") or 0)
    except ValueError:
        rc = 0
    if rc > 0:
        STATS.retries_seen += 1
    if API_KEY is not None:
        if api == "anthropic":
            ok = request.headers.get("x-api-key") == API_KEY
        else:
            ok = request.headers.get("Authorization", "") == f"Bearer {API_KEY}"
        if not ok:
            raise Reject(error_response(api, 401, None))
    try:
        body = json.loads(await request.read())
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
    except ValueError as e:
        raise Reject(error_response(api, 400, None, f"Invalid JSON body: {e}"))
    model = body.get("model")
    messages = body.get("messages")
    if not isinstance(model, str) or not isinstance(messages, list) or not messages:
        raise Reject(
            error_response(
                api,
                400,
                None,
                "'model' (string) and 'messages' (non-empty list) are required.",
            )
        )
    if api == "anthropic" and not isinstance(body.get("max_tokens"), int):
        raise Reject(error_response(api, 400, None, "max_tokens: Field required"))

    merged = dict(BASE_OPTS)
    raw_parts = []
    try:
        last_user = next(
            (
                m
                for m in reversed(messages)
                if isinstance(m, dict) and m.get("role") == "user"
            ),
            None,
        )
        if last_user is not None:
            m = DIRECTIVE_RE.search(_content_text(last_user.get("content")))
            if m:
                merged.update(parse_option_string(m.group(1)))
                raw_parts.append(m.group(1))
        model_echo, _, model_opts = model.partition("?")
        if model_opts:
            merged.update(parse_option_string(model_opts))
            raw_parts.append(model_opts)
        hdr = request.headers.get("x-fake-options")
        if hdr:
            merged.update(parse_option_string(hdr))
            raw_parts.append(hdr)
        for k, v in request.headers.items():
            lk = k.lower()
            if lk.startswith("x-fake-") and lk != "x-fake-options":
                name = lk[7:].replace("-", "_")
                merged.update(parse_option_string(urllib.parse.urlencode({name: v})))
                raw_parts.append(f"{name}={v}")
        opts = Opts(merged, "&".join(raw_parts))
    except ValueError as e:
        raise Reject(error_response(api, 400, None, f"fake provider option error: {e}"))

    if opts.status:
        raise Reject(error_response(api, opts.status, opts))
    if opts.fail_first > 0:
        key = f"{api}|{opts.key or opts.raw}"
        n = STATS.fail_counts.get(key, 0)
        if n < opts.fail_first:
            STATS.fail_counts[key] = n + 1
            raise Reject(error_response(api, opts.fail_status, opts))
    prompt_chars = sum(
        len(_content_text(m.get("content"))) for m in messages if isinstance(m, dict)
    )
    return body, opts, model_echo, max(1, prompt_chars // 4), rc


class Writer:
    """Writes SSE bytes to an aiohttp StreamResponse, counting bytes and noticing a gone client."""

    __slots__ = ("resp", "request", "buf", "buflen", "coalesce", "split", "split_ms")

    def __init__(self, resp, request, coalesce: bool, split: bool, split_ms: float):
        self.resp = resp
        self.request = request
        self.buf: list[bytes] = []
        self.buflen = 0
        self.coalesce = coalesce
        self.split = split
        self.split_ms = split_ms

    async def send(self, data: bytes, flush: bool = True):
        if self.coalesce:
            self.buf.append(data)
            self.buflen += len(data)
            if self.buflen >= 16384 or flush:
                await self.flush()
            return
        await self._write(data)

    async def flush(self):
        if self.buf:
            data = b"".join(self.buf)
            self.buf.clear()
            self.buflen = 0
            await self._write(data)

    async def _write(self, data: bytes):
        tr = self.request.transport
        if tr is None or tr.is_closing():
            raise ClientGone()
        try:
            if self.split and len(data) > 1:
                cut = _split_point(data)
                await self.resp.write(data[:cut])
                await asyncio.sleep(self.split_ms / 1000.0)
                tr = self.request.transport
                if tr is None or tr.is_closing():
                    raise ClientGone()
                await self.resp.write(data[cut:])
            else:
                await self.resp.write(data)
        except (
            ConnectionError,
            RuntimeError,
        ) as e:  # ClientConnectionResetError is a ConnectionResetError
            raise ClientGone() from e
        STATS.bytes_sent += len(data)


def _split_point(data: bytes) -> int:
    """Index inside the first multi-byte UTF-8 sequence, else the middle."""
    for i, b in enumerate(data):
        if b >= 0xC0:  # lead byte of a multi-byte sequence
            return i + 1
    return len(data) // 2


class Pacer:
    """Absolute-clock token schedule with optional jitter."""

    def __init__(self, opts: Opts, loop):
        self.loop = loop
        self.delay = opts.delay_ms / 1000.0
        self.jitter = opts.jitter_ms / 1000.0
        self.rng = random.Random(opts.seed) if self.jitter else None
        self.next_t = loop.time()
        self.paced = self.delay > 0 or self.jitter > 0

    def start(self):
        self.next_t = self.loop.time()

    async def wait_next(self):
        d = self.delay
        if self.rng is not None:
            d = max(0.0, d + self.rng.uniform(-self.jitter, self.jitter))
        self.next_t += d
        wait = self.next_t - self.loop.time()
        if wait > 0:
            await asyncio.sleep(wait)


class Ticker:
    """A timer wheel with 1 ms buckets: one loop timer for all paced streams."""

    RES = 0.001
    MAX_STEPS = 50_000  # per firing, so that a burst cannot starve the loop

    def __init__(self):
        self.buckets: dict[int, list] = {}
        self.heap: list[int] = []
        self.handle = None
        self.next_b: int | None = None
        self.fires = 0

    def add(self, when: float, item) -> None:
        b = math.ceil(when / self.RES)
        lst = self.buckets.get(b)
        if lst is not None:
            lst.append(item)
            return
        self.buckets[b] = [item]
        heapq.heappush(self.heap, b)
        if self.next_b is None or b < self.next_b:
            self._arm()

    def _arm(self) -> None:
        """Keep exactly one loop timer, set for the earliest bucket."""
        if not self.heap:
            return
        b = self.heap[0]
        if self.handle is not None:
            if self.next_b == b:
                return
            self.handle.cancel()
        loop = asyncio.get_running_loop()
        self.next_b = b
        if b <= math.floor(loop.time() / self.RES) + 1:
            self.handle = loop.call_soon(self._fire)
        else:
            self.handle = loop.call_at(b * self.RES, self._fire)

    def _fire(self) -> None:
        loop = asyncio.get_running_loop()
        self.fires += 1
        self.handle = None
        self.next_b = None
        # +1: a timer may fire a fraction of a millisecond early (libuv counts whole ms); treating
        # the current millisecond as due avoids re-arming timers until the clock catches up.
        now_b = math.floor(loop.time() / self.RES) + 1
        steps = 0
        while self.heap and self.heap[0] <= now_b and steps < self.MAX_STEPS:
            b = heapq.heappop(self.heap)
            items = self.buckets.pop(b)
            steps += len(items)
            for it in items:
                try:
                    it.step()
                except Exception:  # a bug in one stream must not stop the others
                    it.finish("server_exception")
        self._arm()


TICKER = Ticker()


class PacedStream:
    __slots__ = (
        "request",
        "opts",
        "n",
        "rec",
        "make_token",
        "pacer",
        "err",
        "i",
        "fut",
        "loop",
    )

    def __init__(
        self,
        request,
        opts: Opts,
        n: int,
        rec: dict,
        make_token,
        pacer: Pacer,
        err: bytes,
    ):
        self.request = request
        self.opts = opts
        self.n = n
        self.rec = rec
        self.make_token = make_token
        self.pacer = pacer
        self.err = err
        self.i = 0
        self.loop = asyncio.get_running_loop()
        self.fut = self.loop.create_future()

    async def run(self) -> str:
        if self.n == 0:
            return "completed"
        self.pacer.start()
        if self.opts.stall_after == 0 and self.opts.stall_ms > 0:
            self.pacer.next_t = self.loop.time() + self.opts.stall_ms / 1000.0
            TICKER.add(self.pacer.next_t, self)
        else:
            self.step()
        return await self.fut

    def finish(self, outcome: str) -> None:
        if not self.fut.done():
            self.fut.set_result(outcome)

    def _write(self, tr, data: bytes) -> None:
        tr.write(b"%x\r\n" % len(data) + data + b"\r\n")
        STATS.bytes_sent += len(data)

    def step(self) -> None:
        if self.fut.done():
            return
        tr = self.request.transport
        if tr is None or tr.is_closing():
            self.finish("client_disconnected")
            return
        i = self.i
        o = self.opts
        if i == o.error_after:
            self._write(tr, self.err)
            self.finish("error_event")
            return
        if i == o.abort_after:
            tr.abort()
            self.finish("aborted")
            return
        if tr.get_write_buffer_size() > (
            1 << 20
        ):  # client not reading: wait, do not buffer without bound
            TICKER.add(self.loop.time() + 0.005, self)
            return
        self._write(tr, self.make_token(i))
        self.i = i = i + 1
        self.rec["sent"] = i
        if i == 1:
            self.rec["first_token_at"] = time.time()
        if i >= self.n:
            self.finish("completed")
            return
        p = self.pacer
        if i == o.stall_after and o.stall_ms > 0:
            p.next_t = self.loop.time() + o.stall_ms / 1000.0
        else:
            d = p.delay
            if p.rng is not None:
                d = max(0.0, d + p.rng.uniform(-p.jitter, p.jitter))
            p.next_t += d
        TICKER.add(p.next_t, self)


async def _stream(
    request: web.Request,
    api: str,
    body: dict,
    opts: Opts,
    model_echo: str,
    prompt_tokens: int,
    retry_count: int,
) -> web.StreamResponse:
    loop = asyncio.get_running_loop()
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    n = opts.tokens
    stop_reason = "stop" if api == "openai" else "end_turn"
    if isinstance(max_tokens, int) and 0 <= max_tokens < n:
        n = max_tokens
        stop_reason = "length" if api == "openai" else "max_tokens"
    include_usage = False
    if api == "openai":
        so = body.get("stream_options") or {}
        include_usage = bool(so.get("include_usage")) and opts.usage != "none"
        obfuscation = so.get("include_obfuscation", True) is not False

    rec = {
        "id": None,
        "api": api,
        "model": model_echo,
        "options": opts.raw,
        "planned": n,
        # The output-limit parameters the client sent, by name.
        "limits": {
            key: body[key]
            for key in ("max_tokens", "max_completion_tokens")
            if key in body
        },
        # Anthropic's extended thinking as the client asked for it (None: not asked).
        "thinking": body.get("thinking"),
        # The system prompt, sampling options and messages the client sent.
        "received": _received(api, body),
        "sent": 0,
        "reasoning_sent": 0,
        "outcome": None,
        "retry_count": retry_count,
        "started_at": time.time(),
        # The client's port: the same port twice means one kept-alive connection.
        "client_port": (request.transport.get_extra_info("peername") or (None, None))[1]
        if request.transport
        else None,
        "first_token_at": None,
        "ended_at": None,
    }
    STATS.streams_started += 1
    STATS.active += 1
    if STATS.active > STATS.peak_active:
        STATS.peak_active = STATS.active
    STATS.statuses[200] += 1

    if opts.headers_delay_ms > 0:
        await asyncio.sleep(opts.headers_delay_ms / 1000.0)

    headers = {
        "Content-Type": "text/event-stream; charset=utf-8",
        "Cache-Control": "no-cache",
    }
    if api == "openai":
        rid = "chatcmpl-" + uuid.uuid4().hex[:24]
        headers["x-request-id"] = "req_" + uuid.uuid4().hex
        headers["openai-processing-ms"] = str(int(opts.ttft_ms))
        headers["openai-version"] = "2020-10-01"
    else:
        rid = "msg_fake" + uuid.uuid4().hex[:20]
        headers["request-id"] = "req_fake" + uuid.uuid4().hex[:20]
        headers["anthropic-organization-id"] = "00000000-0000-0000-0000-000000000000"
    rec["id"] = rid
    resp = web.StreamResponse(status=200, headers=headers)
    resp.enable_chunked_encoding()
    outcome = "completed"
    paced_coalesce = (
        opts.coalesce and opts.delay_ms == 0 and opts.jitter_ms == 0 and not opts.split
    )
    w = Writer(resp, request, paced_coalesce, opts.split, opts.split_ms)
    enc_cache: dict[str, bytes] = {}
    asc = opts.ascii

    try:
        await resp.prepare(request)
        created = int(time.time())
        if api == "openai":
            me = _dumps(model_echo)
            head = (
                'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":%s,'
                '"service_tier":"default","system_fingerprint":"fp_fake0001","choices":[{"index":0,'
                % (rid, created, me)
            ).encode()
            tail_usage = b',"usage":null' if include_usage else b""
            tok_prefix = head + b'"delta":{"content":'
            reasoning_prefix = head + b'"delta":{"%s":' % opts.reasoning_field.encode()
            reasoning_end = b""
            tok_suffix = b'},"logprobs":null,"finish_reason":null}]' + tail_usage
            first = (
                head
                + b'"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,'
                b'"finish_reason":null}]' + tail_usage + _obf(obfuscation, 0) + b"}\n\n"
            )
            await w.send(first, flush=not paced_coalesce)
        else:
            msg = {
                "type": "message_start",
                "message": {
                    "id": rid,
                    "type": "message",
                    "role": "assistant",
                    "model": model_echo,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": _anthropic_usage(opts, prompt_tokens, None),
                },
            }
            if msg["message"]["usage"] is None:
                del msg["message"]["usage"]
            # With reasoning, the thinking block is block 0 and the text block follows it.
            text_index = 1 if opts.reasoning else 0
            text_start = _anthropic_text_start(text_index)
            await w.send(
                b"event: message_start\ndata: "
                + _dumps(msg).encode()
                + b"\n\n"
                + (_ANTHROPIC_THINKING_START if opts.reasoning else text_start)
                + b'event: ping\ndata: {"type": "ping"}\n\n',
                flush=not paced_coalesce,
            )
            tok_prefix = (
                b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
                b'"delta":{"type":"text_delta","text":' % text_index
            )
            tok_suffix = b"}}\n\n"
            reasoning_prefix = (
                b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                b'"delta":{"type":"thinking_delta","thinking":'
            )
            reasoning_end = _anthropic_thinking_end(opts) + text_start

        if opts.ttft_ms > 0:
            if paced_coalesce:
                await w.flush()
            await asyncio.sleep(opts.ttft_ms / 1000.0)
        is_openai = api == "openai"

        def make_token(i: int) -> bytes:
            tok = token_at(opts, i)
            enc = enc_cache.get(tok)
            if enc is None:
                enc = _dumps(tok, asc).encode()
                if len(enc_cache) < 4096:
                    enc_cache[tok] = enc
            if is_openai:
                return (
                    tok_prefix
                    + enc
                    + tok_suffix
                    + _obf(obfuscation, len(tok))
                    + b"}\n\n"
                )
            return tok_prefix + enc + tok_suffix

        def make_reasoning(i: int) -> bytes:
            tok = reasoning_at(i)
            enc = reasoning_prefix + _dumps(tok, asc).encode() + tok_suffix
            if is_openai:
                return enc + _obf(obfuscation, len(tok)) + b"}\n\n"
            return enc

        pacer = Pacer(opts, loop)
        if opts.reasoning:
            await _send_reasoning(
                w, opts, rec, pacer, make_reasoning, reasoning_end, not paced_coalesce
            )
        if pacer.paced and not opts.split:
            # Paced streams are driven by one shared timer wheel writing straight to the transport
            # (no task wake-up per token), so that the fake provider stays cheap at 1000s of streams.
            outcome = await PacedStream(
                request, opts, n, rec, make_token, pacer, _midstream_error(api, opts)
            ).run()
            if outcome == "client_disconnected":
                raise ClientGone()
        else:
            pacer.start()
            for i in range(n):
                if i == opts.error_after:
                    await w.send(_midstream_error(api, opts), flush=True)
                    outcome = "error_event"
                    break
                if i == opts.abort_after:
                    await w.flush()
                    outcome = "aborted"
                    tr = request.transport
                    if tr is not None:
                        tr.abort()
                    break
                if i == opts.stall_after and opts.stall_ms > 0:
                    await w.flush()
                    await asyncio.sleep(opts.stall_ms / 1000.0)
                    pacer.start()
                if i > 0 and pacer.paced:
                    await pacer.wait_next()
                await w.send(make_token(i), flush=not paced_coalesce)
                rec["sent"] = i + 1
                if i == 0:
                    rec["first_token_at"] = time.time()
        STATS.tokens_sent += rec["sent"]

        if outcome == "completed":
            if is_openai:
                fin = (
                    head
                    + b'"delta":{},"logprobs":null,"finish_reason":"'
                    + stop_reason.encode()
                    + b'"}]'
                )
                fin += tail_usage + _obf(obfuscation, 1) + b"}\n\n"
                out = [fin]
                if include_usage:
                    usage = _openai_usage(opts, prompt_tokens, n)
                    out.append(
                        (
                            'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":%s,'
                            '"service_tier":"default","system_fingerprint":"fp_fake0001","choices":[],'
                            '"usage":%s' % (rid, created, me, _dumps(usage))
                        ).encode()
                        + _obf(obfuscation, 2)
                        + b"}\n\n"
                    )
                out.append(b"data: [DONE]\n\n")
                await w.send(b"".join(out), flush=True)
            else:
                md = {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": _anthropic_usage(opts, prompt_tokens, n),
                }
                if md["usage"] is None:
                    del md["usage"]
                await w.send(
                    _anthropic_block_stop(text_index)
                    + b"event: message_delta\ndata: "
                    + _dumps(md).encode()
                    + b"\n\n"
                    b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
                    flush=True,
                )
        else:
            await w.flush()
        if outcome != "aborted":
            try:
                await resp.write_eof()
            except (ConnectionError, RuntimeError) as e:
                raise ClientGone() from e
    except (ClientGone, asyncio.CancelledError):
        # A failed write, or aiohttp cancelling the handler: the client hung up before the end.
        outcome = "client_disconnected"
        raise_it = sys.exc_info()[0] is asyncio.CancelledError
        _finish(rec, outcome)
        if raise_it:
            raise
        return resp
    except BaseException:
        _finish(rec, "server_exception")
        raise
    _finish(rec, outcome)
    return resp


async def _send_reasoning(
    w: Writer,
    opts: Opts,
    rec: dict,
    pacer: Pacer,
    make_reasoning,
    end: bytes,
    flush: bool,
) -> None:
    """Send the reasoning tokens, then `end` (what closes the reasoning), paced as the
    answer's tokens are: delay_ms apart, and delay_ms more before the answer's first."""
    pacer.start()
    for i in range(opts.reasoning):
        if i > 0 and pacer.paced:
            await pacer.wait_next()
        await w.send(make_reasoning(i), flush=flush)
        rec["reasoning_sent"] = i + 1
    if end:
        await w.send(end, flush=flush)
    if pacer.paced:
        await pacer.wait_next()


_ANTHROPIC_THINKING_START = (
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"thinking","thinking":"","signature":""}}\n\n'
)


def _anthropic_text_start(index: int) -> bytes:
    return (
        b'event: content_block_start\ndata: {"type":"content_block_start","index":%d,'
        b'"content_block":{"type":"text","text":""}}\n\n' % index
    )


def _anthropic_block_stop(index: int) -> bytes:
    return (
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n'
        % index
    )


def _anthropic_thinking_end(opts: Opts) -> bytes:
    """The thinking block's signature_delta and content_block_stop."""
    delta = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "signature_delta", "signature": reasoning_signature(opts)},
    }
    return (
        b"event: content_block_delta\ndata: "
        + _dumps(delta).encode()
        + b"\n\n"
        + _anthropic_block_stop(0)
    )


def _received(api: str, body: dict) -> dict:
    """What a request asked of the model besides its limits, one shape for both APIs:
    the system prompt (OpenAI's system messages joined by a blank line, Anthropic's
    `system`), temperature, top_p, the stop sequences and the other messages."""
    messages = [m for m in body.get("messages") or () if isinstance(m, dict)]
    if api == "openai":
        system = [m for m in messages if m.get("role") in ("system", "developer")]
        messages = [m for m in messages if m not in system]
        system_text = "\n\n".join(_content_text(m.get("content")) for m in system)
        stop = body.get("stop")
    else:
        system_text = _content_text(body.get("system"))
        stop = body.get("stop_sequences")
    return {
        "system": system_text or None,
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "stop": [stop] if isinstance(stop, str) else stop,
        "messages": [
            {"role": m.get("role"), "content": _content_text(m.get("content"))}
            for m in messages
        ],
    }


def _openai_usage(opts: Opts, prompt_tokens: int, n: int) -> dict:
    """The usage chunk's counts: the cached tokens are within prompt_tokens, the
    reasoning ones within completion_tokens."""
    prompt = prompt_tokens + opts.cached_tokens
    completion = n + opts.reasoning_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {
            "cached_tokens": opts.cached_tokens,
            "audio_tokens": 0,
        },
        "completion_tokens_details": {
            "reasoning_tokens": opts.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _anthropic_usage(opts: Opts, prompt_tokens: int, n: int | None) -> dict | None:
    """The usage of message_start (`n` None) or of the final message_delta, as
    `opts.usage` places it. input_tokens leaves out the cache reads and writes."""
    where = opts.usage
    if where == "none":
        return None
    if n is None:  # message_start
        if where == "delta":
            return {"input_tokens": 0, "output_tokens": 1}
        return {
            "input_tokens": prompt_tokens,
            "cache_creation_input_tokens": opts.cache_write_tokens,
            "cache_read_input_tokens": opts.cached_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": opts.cache_write_tokens,
                "ephemeral_1h_input_tokens": 0,
            },
            "output_tokens": 1,
            "service_tier": "standard",
        }
    output = n + opts.reasoning_tokens
    usage: dict = {"output_tokens": output}
    if where != "start":
        usage = {
            "input_tokens": prompt_tokens,
            "cache_creation_input_tokens": opts.cache_write_tokens,
            "cache_read_input_tokens": opts.cached_tokens,
            **usage,
        }
    if opts.reasoning_tokens:
        usage["output_tokens_details"] = {"thinking_tokens": opts.reasoning_tokens}
    return usage


def _finish(rec, outcome):
    if rec["outcome"] is not None:
        return
    if outcome in ("client_disconnected", "server_exception"):
        STATS.tokens_sent += rec["sent"]
    rec["outcome"] = outcome
    rec["ended_at"] = time.time()
    STATS.outcomes[outcome] += 1
    STATS.active -= 1
    STATS.recent.append(rec)


_OBF_CACHE: dict[int, bytes] = {}


def _obf(enabled: bool, k: int) -> bytes:
    """OpenAI's `obfuscation` padding field (random-looking characters, varying length)."""
    if not enabled:
        return b""
    k = k % 13
    v = _OBF_CACHE.get(k)
    if v is None:
        rng = random.Random(k)
        pad = "".join(rng.choice(ALPHABET) for _ in range(3 + (11 - k) % 12))
        v = _OBF_CACHE[k] = b',"obfuscation":"' + pad.encode() + b'"'
    return v


def _midstream_error(api: str, opts: Opts) -> bytes:
    if opts.error_type == "malformed":
        # Not an error the provider reports: an event whose data is not JSON at all.
        event = b"" if api == "openai" else b"event: content_block_delta\n"
        return event + b'data: {"choices": [{"delta": {"content": "cut\n\n'
    if api == "openai":
        err = {
            "error": {
                "message": "The server had an error while processing your request. Sorry about that!",
                "type": opts.error_type or "server_error",
                "param": None,
                "code": None,
            }
        }
        return b"data: " + _dumps(err).encode() + b"\n\n"
    etype = opts.error_type or "overloaded_error"
    err = {
        "type": "error",
        "error": {
            "type": etype,
            "message": "Overloaded"
            if etype == "overloaded_error"
            else "Internal server error",
        },
    }
    return b"event: error\ndata: " + _dumps(err).encode() + b"\n\n"


async def _complete(
    api: str, body: dict, opts: Opts, model_echo: str, prompt_tokens: int
) -> web.Response:
    """Non-streaming answer."""
    n = opts.tokens
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    stop = "stop" if api == "openai" else "end_turn"
    if isinstance(max_tokens, int) and 0 <= max_tokens < n:
        n = max_tokens
        stop = "length" if api == "openai" else "max_tokens"
    delay = (opts.ttft_ms + max(0, opts.reasoning + n - 1) * opts.delay_ms) / 1000.0
    if delay > 0:
        await asyncio.sleep(delay)
    text = expected_text(opts, n)
    reasoning = expected_reasoning(opts)
    STATS.tokens_sent += n
    STATS.statuses[200] += 1
    if api == "openai":
        out = {
            "id": "chatcmpl-" + uuid.uuid4().hex[:24],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_echo,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": text,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": stop,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": n,
                "total_tokens": prompt_tokens + n,
            },
            "service_tier": "default",
            "system_fingerprint": "fp_fake0001",
        }
        if reasoning:
            out["choices"][0]["message"][opts.reasoning_field] = reasoning
    else:
        thinking = {
            "type": "thinking",
            "thinking": reasoning,
            "signature": reasoning_signature(opts),
        }
        out = {
            "id": "msg_fake" + uuid.uuid4().hex[:20],
            "type": "message",
            "role": "assistant",
            "model": model_echo,
            "content": [thinking] * bool(reasoning) + [{"type": "text", "text": text}],
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {
                "input_tokens": prompt_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": n,
                "service_tier": "standard",
            },
        }
    return web.Response(text=_dumps(out, opts.ascii), content_type="application/json")


def _handler(api: str):
    async def handle(request: web.Request):
        try:
            body, opts, model_echo, prompt_tokens, rc = await _parse(request, api)
        except Reject as r:
            return r.resp
        if body.get("stream"):
            return await _stream(
                request, api, body, opts, model_echo, prompt_tokens, rc
            )
        return await _complete(api, body, opts, model_echo, prompt_tokens)

    return handle


async def stats_handler(request: web.Request):
    try:
        n = max(0, min(1000, int(request.query.get("recent", "20"))))
    except ValueError:
        n = 20
    return web.json_response(STATS.snapshot(n))


async def reset_handler(request: web.Request):
    STATS.reset()
    return web.json_response({"ok": True})


async def health_handler(request: web.Request):
    return web.Response(text="ok")


def make_app() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", _handler("openai"))
    app.router.add_post("/chat/completions", _handler("openai"))
    app.router.add_post("/v1/messages", _handler("anthropic"))
    app.router.add_get("/stats", stats_handler)
    app.router.add_post("/stats/reset", reset_handler)
    app.router.add_get("/health", health_handler)
    return app


async def serve(host: str, port: int, port_file: str | None, duration: float | None):
    runner = web.AppRunner(make_app(), access_log=None, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096, reuse_address=True)
    await site.start()
    actual = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(
        f"fake_provider listening on http://{host}:{actual} pid={os.getpid()}",
        flush=True,
    )
    if port_file:
        with open(port_file + ".tmp", "w") as f:
            f.write(str(actual))
        os.replace(port_file + ".tmp", port_file)
    try:
        if duration:
            await asyncio.sleep(duration)
        else:
            await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv=None):
    global BASE_OPTS, API_KEY
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--host",
        default="127.0.0.1",
        help="must be a loopback address (default 127.0.0.1)",
    )
    ap.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("FAKE_PORT", "8900")),
        help="0 picks a free port (printed, and written to --port-file)",
    )
    ap.add_argument("--port-file")
    ap.add_argument(
        "--defaults", default="", help="option string applied to every request"
    )
    ap.add_argument(
        "--api-key",
        default=os.environ.get("FAKE_API_KEY"),
        help="if set, require this key (Bearer for OpenAI, x-api-key for Anthropic), else 401",
    )
    ap.add_argument(
        "--duration", type=float, default=None, help="exit after this many seconds"
    )
    ap.add_argument("--no-uvloop", action="store_true")
    ap.add_argument(
        "--help-options",
        action="store_true",
        help="list the per-request options and exit",
    )
    ap.add_argument(
        "--print-text",
        metavar="OPTIONS",
        help="print (JSON) the exact text a stream with these options carries, and exit",
    )
    ap.add_argument(
        "--print-reasoning",
        metavar="OPTIONS",
        help="print (JSON) the exact reasoning a stream with these options carries, and exit",
    )
    a = ap.parse_args(argv)
    if a.help_options:
        for k, (d, h) in OPTION_DOC.items():
            print(f"  {k:18} default {d!r:8} {h}")
        return 0
    BASE_OPTS = default_options()
    if a.defaults:
        BASE_OPTS.update(parse_option_string(a.defaults))
    for options, expected in (
        (a.print_text, expected_text),
        (a.print_reasoning, expected_reasoning),
    ):
        if options is not None:
            d = dict(BASE_OPTS)
            d.update(parse_option_string(options))
            print(json.dumps(expected(Opts(d, options))))
            return 0
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        ap.error("refusing to bind to a non-loopback address")
    Opts(BASE_OPTS, "")  # validate
    API_KEY = a.api_key or None
    if not a.no_uvloop:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
    try:
        asyncio.run(serve(a.host, a.port, a.port_file, a.duration))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
