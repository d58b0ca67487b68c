"""Every error of the API is our JSON error, with the right status: requests Django or
the server cannot read, URLs no route takes, and JSON fields of the wrong type.

Requests Django refuses before or around a view are tried against a real relay
(`manage.py serve`, as production runs it, with DEBUG off); none may leave an ERROR or
a traceback in its log.
"""

import pytest
from django.test import Client, RequestFactory

from streaming.models import Conversation, StreamLog
from tests.helpers import finished_log

pytestmark = pytest.mark.timeout(30)


def _assert_json_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"].strip()
    return body


def _assert_quiet(log: str) -> None:
    """What the relay logged for the request: no error, no traceback."""
    assert " ERROR " not in log, log
    assert "Traceback" not in log, log


# --------------------------------------------------------------------------- relay


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 1024 + b"]" * 1024,
        b'{"prompt": ' + b"[" * 2048 + b"]" * 2048 + b"}",
        b"[" * 2048,
    ],
    ids=["nested list", "nested field", "unclosed"],
)
async def test_a_deeply_nested_json_body_is_a_400(relay, alice_token, body):
    """It was a 500 HTML page, with a RecursionError's traceback in the log."""
    mark = len(relay.log())

    async with relay.client(alice_token) as client:
        response = await client.post(
            "/streams/", content=body, headers={"Content-Type": "application/json"}
        )

    _assert_json_error(response, 400, "bad_request")
    _assert_quiet(relay.log()[mark:])
    assert not await StreamLog.objects.aexists()


@pytest.mark.parametrize("endpoint", ["chat", "events"])
async def test_too_many_query_parameters_are_a_400(
    relay, alice_token, alice_log, endpoint
):
    """It was Django's 400 HTML page, with TooManyFieldsSent logged at ERROR."""
    path = {"chat": "/chat/stream", "events": f"/streams/{alice_log.pk}/events"}
    params = [("prompt", "hi")] + [(f"f{n}", "1") for n in range(1000)]
    mark = len(relay.log())

    async with relay.client(alice_token) as client:
        response = await client.get(path[endpoint], params=params)

    _assert_json_error(response, 400, "bad_request")
    _assert_quiet(relay.log()[mark:])
    assert await StreamLog.objects.acount() == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/streams/-1/events"),
        ("GET", f"/streams/{10**18}/events"),
        ("GET", f"/streams/{10**40}/events"),
        ("POST", f"/streams/{'9' * 19}/stop"),
        ("POST", "/streams/-1/stop"),
        ("GET", "/streams/abc/events"),
        ("GET", "/streams/1/no-such-thing"),
        ("GET", "/chat/stream/more"),
    ],
)
async def test_api_urls_no_route_takes_are_a_json_404(relay, alice_token, method, path):
    """They were Django's 404 HTML page; ids past 18 digits must not reach the
    database either (a bigint overflow there would be a 500)."""
    mark = len(relay.log())

    async with relay.client(alice_token) as client:
        response = await client.request(method, path)

    _assert_json_error(response, 404, "not_found")
    _assert_quiet(relay.log()[mark:])


async def test_other_urls_keep_the_html_404_page(relay, alice_token):
    async with relay.client(alice_token) as client:
        response = await client.get("/no-such-page")

    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data", "multipart/form-data; boundary="],
)
async def test_a_multipart_body_without_a_boundary_is_a_json_400(
    relay, alice_token, content_type
):
    """Twisted parsed the body before Django and answered an empty 400 itself."""
    mark = len(relay.log())

    async with relay.client(alice_token) as client:
        response = await client.post(
            "/streams/", content=b"prompt=hi", headers={"Content-Type": content_type}
        )

    _assert_json_error(response, 400, "bad_request")
    _assert_quiet(relay.log()[mark:])
    assert not await StreamLog.objects.aexists()


async def test_a_multipart_body_with_a_boundary_still_starts_a_stream(
    relay, alice_token
):
    body = (
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; name="prompt"\r\n\r\n'
        b"Hello\r\n"
        b"--b0undary--\r\n"
    )

    async with relay.client(alice_token) as client:
        response = await client.post(
            "/streams/",
            content=body,
            headers={"Content-Type": "multipart/form-data; boundary=b0undary"},
        )

    assert response.status_code == 201, response.text
    log = await StreamLog.objects.aget(pk=response.json()["id"])
    assert log.prompt == "Hello"


def test_a_server_error_on_an_api_url_is_json_and_elsewhere_the_html_page():
    from streaming.server import handlers

    requests = RequestFactory()

    api = handlers.server_error(requests.get("/streams/1/events"))
    page = handlers.server_error(requests.get("/"))

    assert api.status_code == page.status_code == 500
    assert api["Content-Type"] == "application/json"
    assert api.content.startswith(b'{"error": "internal"')
    assert page["Content-Type"].startswith("text/html")


# --------------------------------------------------------------------------- typed


def _post_json(client: Client, token: str, body: bytes | str):
    return client.post(
        "/streams/",
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("conversation", "1.5"),
        ("conversation", "1e400"),
        ("conversation", "1.0"),
        ("conversation", "true"),
        ("conversation", "false"),
        ("conversation", '"1"'),
        ("conversation", "[1]"),
        ("conversation", '{"id": 1}'),
        ("prompt", "true"),
        ("prompt", "12"),
        ("prompt", "null"),
        ("prompt", '["hi"]'),
        ("prompt", '{"text": "hi"}'),
        ("provider", '["openai"]'),
        ("provider", "null"),
        ("provider", "1"),
        ("model", "false"),
        ("model", "4"),
        ("regenerate", '"true"'),
        ("regenerate", "1"),
        ("regenerate", "[]"),
    ],
)
def test_a_json_field_of_the_wrong_type_is_a_400_naming_it(
    client, alice_token, field, value
):
    """Such fields were read as something else: `1.5` as no conversation (a new
    one), `true` as the prompt "true", a list as the default provider."""
    fields = {"prompt": '"Hello"', field: value}
    body = "{" + ", ".join(f'"{name}": {text}' for name, text in fields.items()) + "}"

    response = _post_json(client, alice_token, body)

    error = _assert_json_error(response, 400, "bad_request")
    assert list(error["fields"]) == [field]
    assert f"'{field}'" in error["message"]
    assert not StreamLog.objects.exists()
    assert not Conversation.objects.exists()


@pytest.mark.parametrize("none", ['""', "null"])
async def test_an_empty_or_null_conversation_starts_a_new_one(relay, alice_token, none):
    body = f'{{"prompt": "Hello", "conversation": {none}, "regenerate": {none}}}'

    async with relay.client(alice_token) as client:
        response = await _post_json_to(client, body)

    assert response.status_code == 201, response.text
    started = response.json()
    chat = await Conversation.objects.aget()
    assert started["conversation_id"] == chat.pk
    assert (await finished_log(started["id"])).conversation_id == chat.pk


async def test_fields_of_the_right_types_and_unknown_fields_of_any_type_are_taken(
    relay, alice_token
):
    body = (
        '{"prompt": "Hello", "provider": "demo", "model": "demo", '
        '"regenerate": false, "note": [1, {"a": null}], "conversation": null}'
    )

    async with relay.client(alice_token) as client:
        response = await _post_json_to(client, body)

    assert response.status_code == 201, response.text
    log = await finished_log(response.json()["id"])
    assert (log.prompt, log.provider, log.model) == ("Hello", "demo", "demo")


async def _post_json_to(client, body: str):
    return await client.post(
        "/streams/", content=body, headers={"Content-Type": "application/json"}
    )
