"""Through Debian's nginx with the shipped proxy settings (deploy/nginx/): tokens reach
the client while the provider is still generating, nothing is compressed, and the
client address the relay records is the one nginx saw."""

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from streaming.models import StreamLog
from tests.helpers import (
    BASE_DIR,
    USER_AGENT,
    _stop,
    expected_answer,
    fake,
    free_port,
    new_key,
    read_events,
    token_text,
    tokens_at_least,
)

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PROXY_CONF = BASE_DIR / "deploy" / "nginx" / "relay-proxy.conf"

pytestmark = [pytest.mark.nginx, pytest.mark.timeout(60)]

# Like a distribution's default nginx.conf, this one compresses and buffers; the
# included location settings must undo both for event streams.
CONFIG = """
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    gzip on;
    gzip_types text/event-stream application/json;
    gzip_min_length 1;
    upstream relay {{
        server 127.0.0.1:{relay_port};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            include {proxy_conf};
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, directory: Path, relay_port: int) -> None:
        if not Path(NGINX).exists():
            pytest.skip("needs nginx: apt-get install nginx-light")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = directory / "nginx.conf"
        config.write_text(
            CONFIG.format(
                directory=directory,
                relay_port=relay_port,
                port=self.port,
                proxy_conf=PROXY_CONF,
            )
        )
        self.process = subprocess.Popen(
            [NGINX, "-c", str(config), "-p", str(directory), "-e", "stderr"]
            + ["-g", "daemon off;"],
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"{self.url}/healthz", timeout=2)
                return
            except httpx.TransportError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(self.process.stderr.read().decode()) from None
                time.sleep(0.05)

    def stop(self) -> None:
        _stop(self.process)


@pytest.fixture
def nginx(relay, tmp_path):
    server = Nginx(tmp_path, relay.port)
    yield server
    server.stop()


@pytest.fixture
def served(start_relay):
    """`manage.py serve --proxy-headers`, as docs/deploy.md runs it."""
    return start_relay("--proxy-headers")


@pytest.fixture
def nginx_before_serve(served, tmp_path):
    server = Nginx(tmp_path, served.port)
    yield server
    server.stop()


async def test_tokens_pass_nginx_as_the_provider_generates_them(
    nginx, alice_token, upstream
):
    key = new_key()
    options = {"tokens": 30, "delay_ms": 100, "pattern": "counter"}
    finished_upstream_at_first_token = None

    def note_first_token(events) -> bool:
        nonlocal finished_upstream_at_first_token
        if finished_upstream_at_first_token is None and tokens_at_least(1)(events):
            finished_upstream_at_first_token = upstream["openai"].streams(key)
        return False

    headers = {"Authorization": f"Bearer {alice_token}", "User-Agent": USER_AGENT}
    async with httpx.AsyncClient(base_url=nginx.url, headers=headers) as client:
        received = await read_events(
            client,
            "/chat/stream",
            params={"prompt": "Go " + fake(**options, key=key)},
            until=note_first_token,
        )

    assert received.status == 200
    assert received.headers["content-type"].startswith("text/event-stream")
    assert "content-encoding" not in received.headers
    # The first token arrived while the provider had the other 29 still to send.
    assert finished_upstream_at_first_token == []
    assert token_text(received.events) == expected_answer(**options)
    assert received.events[-1].event == "done"
    assert (await upstream["openai"].outcome(key))["outcome"] == "completed"


async def _client_addr(url: str, token: str, forwarded_for: str) -> str | None:
    """Start a demo stream at `url` claiming `forwarded_for`, read it to its end, and
    return the client address its log recorded."""
    headers = {
        "Authorization": f"Bearer {token}",
        "User-Agent": USER_AGENT,
        "X-Forwarded-For": forwarded_for,
    }
    async with httpx.AsyncClient(base_url=url, headers=headers) as client:
        started = await client.post(
            "/streams/", json={"prompt": "hi", "provider": "demo"}
        )
        assert started.status_code == 201, started.text
        received = await read_events(client, started.json()["events_url"])
    assert received.events[-1].event == "done"
    return (await StreamLog.objects.aget(pk=started.json()["id"])).client_addr


async def test_a_client_cannot_choose_its_address_through_nginx(
    nginx_before_serve, served, alice_token
):
    """Regression: nginx appended the real address to the client's X-Forwarded-For,
    and `serve --proxy-headers` reads the first, so the client chose it (and with it
    the login throttle's address and every log's client_addr)."""
    serve_url = served.url

    direct = await _client_addr(serve_url, alice_token, "6.6.6.6")
    proxied = await _client_addr(nginx_before_serve.url, alice_token, "6.6.6.6")

    # serve trusts the header (only nginx may reach it), so nginx must set it.
    assert direct == "6.6.6.6"
    assert proxied == "127.0.0.1"
