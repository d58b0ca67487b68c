"""`manage.py serve`, the production entrypoint: SIGTERM drains streams, nothing hangs."""

import asyncio
import json
import signal
import subprocess
import sys
import time

import httpx
import pytest

from streaming.models import StreamLog
from tests.helpers import (
    BASE_DIR,
    fake,
    finished_log,
    free_port,
    read_events,
    tokens_at_least,
)

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def serve(relay_env, transactional_db, tmp_path):
    """Start `manage.py serve` with a 2 s drain; yields (process, base url, log path)."""
    port = free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port), "--drain", "2"],
            cwd=BASE_DIR,
            env=relay_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/healthz", timeout=2)
            break
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log_path.read_text()) from None
            time.sleep(0.05)
    yield process, url, log_path
    if process.poll() is None:
        process.kill()
        process.wait(timeout=5)


async def test_sigterm_lets_short_streams_finish_and_interrupts_long_ones(
    serve, alice, alice_token
):
    process, url, log_path = serve
    headers = {"Authorization": f"Bearer {alice_token}"}
    short = fake(tokens=60, delay_ms=20, pattern="counter")  # about 1.2 s
    long = fake(tokens=1000, delay_ms=20, pattern="counter")  # about 20 s

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        started = [
            (await client.post("/streams/", json={"prompt": p})).json()
            for p in (f"short {short}", f"long {long}")
        ]
        readers = [
            asyncio.create_task(read_events(client, s["events_url"])) for s in started
        ]
        await read_events(client, started[1]["events_url"], until=tokens_at_least(3))

        sent_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        with pytest.raises(httpx.ConnectError):
            await client.post("/streams/", json={"prompt": "too late"})
        short_seen, long_seen = await asyncio.gather(*readers)

    exit_code = await asyncio.to_thread(process.wait, 20)
    assert exit_code == 0, log_path.read_text()
    assert time.monotonic() - sent_at < 15

    assert short_seen.events[-1].event == "done"
    last = long_seen.events[-1]
    assert last.event == "error"
    assert json.loads(last.data)["code"] == "interrupted"
    assert json.loads(last.data)["retryable"] is True

    short_log = await finished_log(started[0]["id"])
    long_log = await finished_log(started[1]["id"])
    assert short_log.status == StreamLog.Status.COMPLETED
    assert (long_log.status, long_log.error_code) == ("interrupted", "interrupted")
    assert long_log.response and long_log.tokens_estimated
    assert await StreamLog.objects.acount() == 2


async def test_it_serves_the_collected_static_files(serve):
    _process, url, _log_path = serve
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.get("/static/streaming/chat.js")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == 'text/javascript; charset="utf-8"'
