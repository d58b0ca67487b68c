"""Static files from a production process (DEBUG off, no proxy in front): hashed names
cached for good, compressed copies, and ES-module imports that survive the hashing."""

import gzip
import json
import re
import subprocess
import sys
from urllib.parse import urljoin

import brotli
import pytest
from django.conf import settings

from tests.helpers import BASE_DIR, environ_without

HASHED = r"\.[0-9a-f]{12}\."
FOREVER = "max-age=315360000, public, immutable"
# The specifier of each static import or re-export (`import … from "…"`,
# `import "…"`, `export … from "…"`) and of each dynamic `import("…")`.
IMPORT = re.compile(r"""(?:\bfrom\s*|\bimport\s*\(?\s*)["']([^"']+)["']""")


def _page_assets(html: str) -> list[str]:
    scripts = re.findall(r'<script type="module" src="([^"]+)"', html)
    styles = re.findall(r'<link rel="stylesheet" href="([^"]+)"', html)
    return scripts + styles


def _hashed_scripts(static_root) -> list[str]:
    manifest = json.loads((static_root / "staticfiles.json").read_text())
    return [
        f"/static/{name}" for name in manifest["paths"].values() if name.endswith(".js")
    ]


async def test_the_chat_page_references_hashed_scripts_and_styles(relay, alice_cookies):
    async with relay.client(cookies=alice_cookies) as client:
        page = await client.get("/")

    assert page.status_code == 200
    assets = _page_assets(page.text)
    assert {re.sub(HASHED, ".", url) for url in assets} == {
        "/static/streaming/chat.js",
        "/static/streaming/chat.css",
    }
    assert all(re.search(HASHED, url) for url in assets)


async def test_a_hashed_script_is_served_as_javascript_cached_for_good(
    relay, alice_cookies
):
    async with relay.client(cookies=alice_cookies) as client:
        (script,) = re.findall(
            r'<script type="module" src="([^"]+)"', (await client.get("/")).text
        )
        response = await client.get(script)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == 'text/javascript; charset="utf-8"'
    assert response.headers["Cache-Control"] == FOREVER
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "openStream" in response.text


@pytest.mark.parametrize(
    ("encoding", "decompress"), [("br", brotli.decompress), ("gzip", gzip.decompress)]
)
async def test_clients_that_accept_compression_get_the_compressed_copy(
    relay, static_root, encoding, decompress
):
    (script,) = [u for u in _hashed_scripts(static_root) if "/chat." in u]
    async with relay.client() as client:
        plain = await client.get(script, headers={"Accept-Encoding": "identity"})
        request = client.build_request(
            "GET", script, headers={"Accept-Encoding": encoding}
        )
        response = await client.send(request, stream=True)
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
        await response.aclose()

    assert plain.status_code == response.status_code == 200
    assert "Content-Encoding" not in plain.headers
    assert response.headers["Content-Encoding"] == encoding
    assert response.headers["Vary"] == "Accept-Encoding"
    assert response.headers["Cache-Control"] == FOREVER
    assert len(raw) < len(plain.content)
    assert decompress(raw) == plain.content


async def test_every_module_import_resolves_to_a_served_hashed_file(relay, static_root):
    scripts = _hashed_scripts(static_root)
    imported: dict[str, int] = {}
    async with relay.client() as client:
        for script in scripts:
            source = (await client.get(script)).text
            for specifier in IMPORT.findall(source):
                if specifier.startswith(("./", "../", "/")):
                    url = urljoin(script, specifier)
                    imported[url] = (await client.get(url)).status_code

    assert {re.sub(HASHED, ".", url) for url in imported} >= {
        "/static/streaming/sse-client.js",
        "/static/streaming/markdown.js",
        "/static/vendor/marked.esm.js",
        "/static/vendor/purify.es.mjs",
    }
    assert all(re.search(HASHED, url) for url in imported), imported
    assert set(imported.values()) == {200}


async def test_the_unhashed_name_is_served_but_cached_briefly(relay):
    """Programs import /static/streaming/sse-client.js by its plain name (README)."""
    async with relay.client() as client:
        response = await client.get("/static/streaming/sse-client.js")
        missing = await client.get("/static/streaming/missing.js")

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "max-age=60, public"
    assert "export function openStream" in response.text
    assert missing.status_code == 404


@pytest.mark.parametrize("collected", [False, True])
def test_the_deploy_check_warns_when_collectstatic_has_not_run(
    static_root, tmp_path, collected
):
    env = environ_without("DJANGO_", "PYTEST_", "DATABASE_URL", "REDIS_URL")
    env.update(
        DEBUG="false",
        SECRET_KEY=settings.SECRET_KEY,
        STATIC_ROOT=str(static_root if collected else tmp_path),
    )

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert ("streaming.W009" in result.stderr) is not collected
