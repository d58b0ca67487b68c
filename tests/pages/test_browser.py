"""The chat page in headless Chromium (Debian's package, never a downloaded one),
driven by Playwright against a real daphne and the fake provider.

Screenshots of the main states go to test-artifacts/screenshots/.
"""

import os
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from streaming.models import Conversation, StreamLog
from tests.helpers import (
    BASE_DIR,
    expected_answer,
    expected_reasoning,
    fake,
    free_port,
    new_key,
)

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SCREENSHOTS = BASE_DIR / "test-artifacts" / "screenshots"

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def browser(django_db_setup):
    if not Path(CHROMIUM).exists():
        pytest.skip(
            f"needs Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)"
        )
    # Playwright's sync API keeps an event loop running on this thread until it stops,
    # so it lives only as long as this module. The tests' own ORM calls are plain
    # synchronous calls, safe despite that loop (Playwright's documented advice).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with playwright_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=["--disable-background-networking", "--disable-component-update"],
            )
            yield browser
            browser.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def site(start_relay):
    """The relay serving its own static files (DEBUG), as `make run` does."""
    return start_relay(instance="web", DEBUG="true")


@pytest.fixture
def production_site(start_relay):
    """The relay as production runs it: DEBUG off (secure cookies, which Chromium
    keeps on loopback), its collected static files served by the app, no proxy."""
    return start_relay()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    yield page
    context.close()


def log_in(page, base_url: str, user) -> None:
    """Log `user` in through the login form, as a person would."""
    password = f"{user.username}-secret-password"
    user.set_password(password)
    user.save(update_fields=["password"])
    page.goto(f"{base_url}/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}/")


def send(page, prompt: str, *, model: str = "openai:gpt-4o-mini") -> None:
    page.get_by_label("Model").select_option(model)
    page.get_by_role("textbox", name="Message").fill(prompt)
    page.get_by_role("textbox", name="Message").press("Enter")


LAST_ANSWER = "[...document.querySelectorAll('.message.assistant .body')].pop()"


def wait_for_answer(page, pattern: str) -> None:
    """Wait until the newest answer on the page matches the regular expression."""
    page.wait_for_function(f"() => /{pattern}/.test({LAST_ANSWER}?.textContent ?? '')")


def answer(page):
    return page.locator(".message.assistant .body").last


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def finished(log: StreamLog, timeout: float = 10) -> StreamLog:
    """The log once its outcome is written (viewers see the end a moment before)."""
    deadline = time.monotonic() + timeout
    while not log.is_finished and time.monotonic() < deadline:
        time.sleep(0.05)
        log.refresh_from_db()
    return log


def words(text: str) -> str:
    return " ".join(text.split())


def test_the_chat_page_works_with_debug_off(page, production_site, alice):
    """Regression: with DEBUG off /static/ answered 404, so Enter did nothing."""
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.on(
        "response",
        lambda response: response.status >= 400 and failed.append(response.url),
    )
    log_in(page, production_site.url, alice)

    send(page, "Count for me " + fake(tokens=20, pattern="counter"))

    page.wait_for_function(
        "() => document.querySelector('#status').textContent === 'Done.'"
    )
    assert words(answer(page).inner_text()) == words(
        expected_answer(tokens=20, pattern="counter")
    )
    # The page reached Done. through its scripts (no form post), under hashed names.
    assert re.search(r"/c/\d+/$", page.url)
    scripts = page.eval_on_selector_all(
        "script[type=module]", "scripts => scripts.map(s => s.src)"
    )
    assert scripts and all(re.search(r"\.[0-9a-f]{12}\.js$", s) for s in scripts)
    assert page.evaluate(
        "[...document.styleSheets].some(s => s.href && s.cssRules.length > 0)"
    )
    assert failed == []


def test_it_logs_in_and_streams_an_answer_that_grows(page, site, alice):
    options = {"tokens": 60, "delay_ms": 40, "pattern": "counter"}
    log_in(page, site.url, alice)
    shot(page, "01-empty-chat")

    send(page, "Count for me " + fake(**options))

    # An intermediate state: some tokens shown, the answer not finished.
    page.wait_for_function(
        "() => { const b = [...document.querySelectorAll('.message.assistant .body')].pop();"
        " return b && /t5\\b/.test(b.textContent) && !/t59\\b/.test(b.textContent); }"
    )
    partial = answer(page).inner_text()
    assert 0 < len(partial) < len(expected_answer(**options))
    assert page.locator("#status").inner_text() == "Streaming…"
    shot(page, "02-streaming")

    page.wait_for_function(
        "() => document.querySelector('#status').textContent === 'Done.'"
    )
    assert words(answer(page).inner_text()) == words(expected_answer(**options))
    assert not page.get_by_role("button", name="Stop").is_visible()
    assert page.locator(".message.user .body").inner_text().startswith("Count for me")
    # The conversation was created, titled from the prompt, and is in the sidebar.
    assert re.search(r"/c/\d+/$", page.url)
    assert (
        page.locator("#conversations .current a")
        .inner_text()
        .startswith("Count for me")
    )
    log = finished(StreamLog.objects.get(user=alice))
    assert log.status == StreamLog.Status.COMPLETED
    assert log.response == expected_answer(**options)
    shot(page, "03-done")


def test_markdown_renders_and_injected_html_stays_inert(page, site, alice):
    text = (
        "# Title\n\n**bold** and `code`\n\n| a | b |\n| - | - |\n| 1 | 2 |\n\n"
        '```\nprint(1)\n```\n\n<img src=x onerror="window.pwned=1">'
        "<script>window.pwned=2</script>[link](javascript:window.pwned=3)"
    )
    options = {"pattern": "fixed", "text": text, "tokens": 1}
    log_in(page, site.url, alice)
    send(page, "render " + fake(**options))
    page.wait_for_function(
        "() => document.querySelector('#status').textContent === 'Done.'"
    )

    body = answer(page)
    assert body.locator("h1").inner_text() == "Title"
    assert body.locator("strong").inner_text() == "bold"
    assert body.locator("table td").count() == 2
    assert body.locator("pre code").inner_text().strip() == "print(1)"
    assert body.locator("script").count() == 0
    assert body.locator("img[onerror]").count() == 0
    body.locator("a", has_text="link").click()
    assert page.evaluate("() => window.pwned") is None
    shot(page, "04-markdown")


THINKING = ".message.assistant .thinking"

# Records the newest answer's Thinking block at every change of the messages: its
# text, its summary, and whether it is hidden or open.
RECORD_THINKING = """() => {
  window.thinking = [];
  const record = () => {
    const item = [...document.querySelectorAll('.message.assistant')].pop();
    const block = item?.querySelector('.thinking');
    if (!block) return;
    window.thinking.push({
      text: block.querySelector('.thinking-body').textContent,
      summary: block.querySelector('summary').textContent,
      hidden: block.hidden,
      open: block.open,
    });
  };
  new MutationObserver(record).observe(document.getElementById('messages'), {
    subtree: true, childList: true, characterData: true, attributes: true,
  });
}"""


def wait_until_done(page) -> None:
    page.wait_for_function(
        "() => document.querySelector('#status').textContent === 'Done.'"
    )


@pytest.mark.parametrize("model", ["openai:gpt-4o-mini", "anthropic:claude-sonnet-4-5"])
def test_the_reasoning_streams_into_a_closed_thinking_block(page, site, alice, model):
    options = {"reasoning": 6, "tokens": 8, "delay_ms": 40}
    reasoning = expected_reasoning(**options)
    log_in(page, site.url, alice)
    page.evaluate(RECORD_THINKING)

    send(page, "think " + fake(**options), model=model)
    wait_until_done(page)

    seen = page.evaluate("() => window.thinking")
    shown = [state for state in seen if not state["hidden"]]
    texts = list(dict.fromkeys(state["text"] for state in shown))
    # It grew, piece by piece, each a beginning of the reasoning, to all of it.
    assert len(texts) > 2
    assert all(reasoning.startswith(text) for text in texts)
    assert texts[-1] == reasoning
    assert not any(state["open"] for state in seen)
    # While the reasoning came (before the answer) the model was thinking; then not.
    assert {s["summary"] for s in shown if s["text"] != reasoning} == {"Thinking…"}
    assert shown[-1]["summary"] == "Thinking"
    block = page.locator(THINKING).last
    assert block.is_visible()
    assert block.get_attribute("open") is None
    assert block.locator(".thinking-body").text_content() == reasoning
    assert not block.locator(".thinking-body").is_visible()  # closed
    assert words(answer(page).inner_text()) == words(expected_answer(**options))
    log = finished(StreamLog.objects.get(user=alice))
    assert (log.reasoning, log.response) == (reasoning, expected_answer(**options))
    provider = model.partition(":")[0]
    shot(page, f"11-thinking-closed-{provider}")

    block.locator("summary").click()
    assert block.locator(".thinking-body").is_visible()
    shot(page, f"12-thinking-open-{provider}")

    page.reload()
    block = page.locator(THINKING).last
    assert block.is_visible()
    assert block.get_attribute("open") is None
    assert block.locator("summary").text_content() == "Thinking"
    assert block.locator(".thinking-body").text_content() == reasoning

    # Regenerating replaces the reasoning rather than adding to it.
    page.evaluate(RECORD_THINKING)
    page.locator(".message.assistant .regenerate").last.click()
    wait_until_done(page)
    assert page.evaluate("() => window.thinking")[0]["text"] == ""
    assert block.locator(".thinking-body").text_content() == reasoning
    assert page.locator(".message.assistant").count() == 1
    assert StreamLog.objects.filter(user=alice).count() == 2


def test_an_answer_without_reasoning_keeps_the_thinking_block_hidden(page, site, alice):
    options = {"tokens": 8, "delay_ms": 10, "pattern": "counter"}
    log_in(page, site.url, alice)
    page.evaluate(RECORD_THINKING)

    send(page, "no thoughts " + fake(**options))
    wait_until_done(page)

    seen = page.evaluate("() => window.thinking")
    assert seen and all(state["hidden"] for state in seen)
    assert page.locator(THINKING).last.is_hidden()
    assert page.locator(THINKING).last.text_content() == "Thinking"
    assert words(answer(page).inner_text()) == words(expected_answer(**options))
    page.reload()
    assert page.locator(THINKING).last.is_hidden()


def test_reload_mid_reasoning_resumes_the_reasoning_and_the_answer(page, site, alice):
    options = {"reasoning": 60, "tokens": 20, "delay_ms": 30}
    reasoning = expected_reasoning(**options)
    log_in(page, site.url, alice)
    send(page, "think long " + fake(**options))
    page.wait_for_function(
        f"() => /Step 5:/.test([...document.querySelectorAll('{THINKING}-body')]"
        ".pop()?.textContent ?? '')"
    )
    page.reload()

    wait_until_done(page)
    block = page.locator(THINKING).last
    assert block.locator(".thinking-body").text_content() == reasoning
    assert block.locator("summary").text_content() == "Thinking"
    assert block.get_attribute("open") is None
    assert words(answer(page).inner_text()) == words(expected_answer(**options))
    assert StreamLog.objects.filter(user=alice).count() == 1


def test_stop_keeps_the_partial_answer(page, site, alice, upstream):
    key = new_key()
    options = {"tokens": 400, "delay_ms": 30, "pattern": "counter", "key": key}
    log_in(page, site.url, alice)
    send(page, "long " + fake(**options))
    wait_for_answer(page, r"t10\b")
    page.get_by_role("button", name="Stop").click()

    page.wait_for_function(
        "() => document.querySelector('#status').textContent === 'Stopped.'"
    )
    assert (
        page.locator(".message.assistant .message-state").last.inner_text() == "Stopped"
    )
    shown = words(answer(page).inner_text())
    assert shown and "t10" in shown and "t399" not in shown
    log = finished(StreamLog.objects.get(user=alice))
    assert (log.status, log.error_code) == (StreamLog.Status.CANCELLED, "stopped")
    assert words(log.response) == shown
    shot(page, "05-stopped")


def test_reload_mid_stream_resumes_the_same_answer(page, site, alice):
    options = {"tokens": 80, "delay_ms": 40, "pattern": "counter"}
    log_in(page, site.url, alice)
    send(page, "reload " + fake(**options))
    wait_for_answer(page, r"t10\b")
    page.reload()

    page.wait_for_function(
        "() => document.querySelector('#status').textContent === 'Done.'"
    )
    assert words(answer(page).inner_text()) == words(expected_answer(**options))
    assert StreamLog.objects.filter(user=alice).count() == 1


def test_a_second_tab_shows_the_same_live_answer(page, browser, site, alice):
    options = {"tokens": 80, "delay_ms": 40, "pattern": "counter"}
    log_in(page, site.url, alice)
    send(page, "two tabs " + fake(**options))
    page.wait_for_url(re.compile(r"/c/\d+/$"))

    second = page.context.new_page()
    second.goto(page.url)
    second.wait_for_function(
        "() => document.querySelector('#status').textContent === 'Streaming…'"
    )
    shot(second, "06-second-tab")
    for tab in (page, second):
        tab.wait_for_function(
            "() => document.querySelector('#status').textContent === 'Done.'"
        )
        assert words(answer(tab).inner_text()) == words(expected_answer(**options))
    assert StreamLog.objects.filter(user=alice).count() == 1


def test_an_upstream_error_shows_inline_with_retry(page, site, alice):
    options = {"tokens": 50, "delay_ms": 5, "error_after": 5, "pattern": "counter"}
    log_in(page, site.url, alice)
    send(page, "fail " + fake(**options))

    error = page.locator(".message.assistant .message-error").last
    error.wait_for(state="visible")
    assert "unavailable" in error.inner_text().lower()
    retry = page.locator(".message.assistant .regenerate").last
    assert retry.inner_text() == "Retry"
    shot(page, "07-error")

    # Retry asks again for the same turn; this time the directive still fails, but a
    # new stream was started for the same conversation.
    retry.click()
    page.wait_for_function(
        "() => document.querySelector('#status').dataset.state === 'error'"
    )
    assert StreamLog.objects.filter(user=alice).count() == 2
    assert page.locator(".message.assistant").count() == 1


class CuttingProxy:
    """A TCP proxy the test owns: `cut()` drops every open connection at once."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.sockets.clear()

    def close(self) -> None:
        self.listener.close()
        self.cut()


def test_a_cut_connection_resumes_from_the_last_event_id(page, site, alice):
    proxy = CuttingProxy(site.port)
    try:
        base = f"http://127.0.0.1:{proxy.port}"
        options = {"tokens": 100, "delay_ms": 30, "pattern": "counter"}
        log_in(page, base, alice)
        send(page, "cut " + fake(**options))
        wait_for_answer(page, r"t20\b")
        proxy.cut()
        page.wait_for_function(
            "() => document.querySelector('#status').textContent === 'Done.'"
        )
        assert words(answer(page).inner_text()) == words(expected_answer(**options))
    finally:
        proxy.close()
    stream = finished(StreamLog.objects.get(user=alice))
    assert re.search(rf"GET /streams/{stream.pk}/events\?last_event_id=\d+", site.log())
    assert stream.response == expected_answer(**options)


def test_staff_see_the_log_and_its_live_tail(page, browser, site, charlie):
    charlie.is_superuser = True
    charlie.save(update_fields=["is_superuser"])
    options = {"tokens": 120, "delay_ms": 40, "pattern": "counter"}
    log_in(page, site.url, charlie)
    send(page, "watched " + fake(**options))
    page.wait_for_url(re.compile(r"/c/\d+/$"))
    stream = StreamLog.objects.get(user=charlie)

    admin = page.context.new_page()
    admin.goto(f"{site.url}/admin/streaming/streamlog/")
    assert admin.locator("#result_list").get_by_text("charlie").count() == 1
    admin.goto(f"{site.url}/admin/streaming/streamlog/{stream.pk}/live/")
    admin.wait_for_function(
        "() => /t5\\b/.test(document.querySelector('#live-answer').textContent)"
    )
    shot(admin, "08-admin-live-tail")
    admin.wait_for_function(
        "() => document.querySelector('#live-status').textContent === 'Done.'"
    )
    assert words(admin.locator("#live-answer").inner_text()) == words(
        expected_answer(**options)
    )
    admin.goto(f"{site.url}/admin/streaming/streamlog/{stream.pk}/change/")
    assert "t119" in admin.locator(".field-answer").inner_text()
    shot(admin, "09-admin-log")


def test_the_page_is_usable_at_phone_width(browser, site, alice):
    context = browser.new_context(viewport={"width": 375, "height": 740})
    page = context.new_page()
    try:
        log_in(page, site.url, alice)
        send(page, "phone " + fake(tokens=10, pattern="counter"))
        page.wait_for_function(
            "() => document.querySelector('#status').textContent === 'Done.'"
        )
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 375
        assert page.get_by_role("button", name="Send").is_visible()
        shot(page, "10-phone")
    finally:
        context.close()


def test_a_100000_character_answer_renders_completely(page, site, alice):
    # 100 characters, so 1,000 tokens make a 100,000-character answer.
    paragraph = (
        "A paragraph of a long answer, with `code` and **bold** words in it, "
        "and then a few more words now.\n\n"
    )
    options = {"pattern": "fixed", "text": paragraph, "tokens": 1000, "delay_ms": 1}
    log_in(page, site.url, alice)
    send(page, "long " + fake(**options))
    wait_for_answer(page, "paragraph")
    page.wait_for_function(
        "() => document.querySelector('#status').textContent === 'Done.'",
        timeout=60_000,
    )
    assert len(expected_answer(**options)) == 100_000
    assert answer(page).locator("p").count() == 1000
    assert answer(page).locator("strong").count() == 1000
    log = finished(StreamLog.objects.get(user=alice))
    assert log.response == expected_answer(**options)


class OtherSite:
    """A page on another origin (another port of 127.0.0.1), serving `html`."""

    def __init__(self, html: str) -> None:
        body = html.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_another_site_cannot_start_a_paid_stream_with_the_session(page, site, alice):
    log_in(page, site.url, alice)
    target = f"{site.url}/chat/stream?prompt=" + "attack%20" + "%5Bfake%3Ftokens%3D3%5D"
    other = OtherSite(
        f"""<!doctype html><body>
        <img src="{target}&via=img">
        <script src="{target}&via=script"></script>
        <iframe src="{target}&via=iframe"></iframe>
        <form id="f" method="post" action="{site.url}/streams/">
          <input name="prompt" value="attack by form"></form>
        <script>
          const source = new EventSource("{target}&via=eventsource", {{withCredentials: true}});
          source.onerror = () => source.close();
          fetch("{target}&via=fetch", {{credentials: "include", mode: "no-cors"}});
          document.getElementById("f").submit();
        </script></body>"""
    )
    try:
        page.goto(other.url)
        page.wait_for_load_state("load")
        page.wait_for_timeout(1500)  # let every request reach the relay
    finally:
        other.close()

    assert not StreamLog.objects.filter(user=alice).exists()
    log = site.log()
    for via in ("img", "script", "iframe", "eventsource", "fetch"):
        assert re.search(
            rf'"GET /chat/stream\?prompt=attack[^"]*via={via}[^"]*" 403', log
        ), via
    assert re.search(r'"POST /streams/" 403', log)

    # The same session from our own page works.
    page.goto(f"{site.url}/")
    send(page, "mine " + fake(tokens=3, pattern="counter"))
    page.wait_for_function(
        "() => document.querySelector('#status').textContent === 'Done.'"
    )
    assert StreamLog.objects.filter(user=alice).count() == 1


def test_copy_puts_the_raw_markdown_on_the_clipboard(browser, site, alice):
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    try:
        text = "# Heading\n\n- one\n- **two**\n"
        log_in(page, site.url, alice)
        send(page, "copy " + fake(pattern="fixed", text=text, tokens=1))
        page.wait_for_function(
            "() => document.querySelector('#status').textContent === 'Done.'"
        )
        page.locator(".message.assistant .copy").last.click()
        page.wait_for_function(
            "() => document.querySelector('#status').textContent === 'Copied.'"
        )
        assert page.evaluate("() => navigator.clipboard.readText()") == text
    finally:
        context.close()


def test_a_conversation_is_renamed_and_deleted_after_confirmation(page, site, alice):
    log_in(page, site.url, alice)
    send(page, "first chat " + fake(tokens=3, pattern="counter"))
    page.wait_for_function(
        "() => document.querySelector('#status').textContent === 'Done.'"
    )
    page.reload()  # the header's rename/delete controls come with the conversation page

    page.get_by_text("Rename or delete").click()
    page.get_by_label("Title").fill("Renamed chat")
    page.get_by_role("button", name="Rename").click()
    assert page.locator("#chat-title").inner_text() == "Renamed chat"
    assert page.locator("#conversations .current a").inner_text() == "Renamed chat"

    page.get_by_text("Rename or delete").click()
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Delete conversation").click()
    assert Conversation.objects.filter(owner=alice).count() == 1

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete conversation").click()
    page.wait_for_url(f"{site.url}/")
    assert not Conversation.objects.filter(owner=alice).exists()
    assert StreamLog.objects.filter(user=alice).count() == 1  # the record stays
    assert page.locator("#conversations .empty").is_visible()
