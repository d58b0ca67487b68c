"""Staff see and stop other users' streams only as far as their permissions allow:
`streaming.view_streamlog` to read one, `streaming.stop_streamlog` to stop one.
Without them a stream answers exactly as a stream that does not exist."""

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission

from streaming.models import StreamLog
from tests.helpers import parse_sse, token_text

pytestmark = pytest.mark.django_db(transaction=True)

MISSING = 999_999_999


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@sync_to_async
def _grant(user, *codenames: str) -> None:
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="streaming", codename__in=codenames
        )
    )


@pytest.fixture
def alice_live(alice, make_log) -> StreamLog:
    """A stream of Alice's still running, on some other process."""
    return make_log(alice, status=StreamLog.Status.STREAMING, response="Hel")


async def _answers(async_client, token: str, stream_id: int) -> list[tuple]:
    """(status, body) of reading and of stopping the stream."""
    events = await async_client.get(
        f"/streams/{stream_id}/events", headers=_bearer(token)
    )
    stop = await async_client.post(f"/streams/{stream_id}/stop", headers=_bearer(token))
    return [(r.status_code, r.content) for r in (events, stop)]


async def test_staff_without_permissions_get_the_404_of_a_missing_stream(
    async_client, alice_log, alice_live, dave_token
):
    missing = await _answers(async_client, dave_token, MISSING)

    finished = await _answers(async_client, dave_token, alice_log.pk)
    running = await _answers(async_client, dave_token, alice_live.pk)

    assert missing[0][0] == missing[1][0] == 404
    assert finished == running == missing
    # Nothing was stopped.
    assert (await StreamLog.objects.aget(pk=alice_live.pk)).status == "streaming"


async def test_staff_who_may_view_stream_logs_read_them_but_may_not_stop_them(
    async_client, alice_log, alice_live, dave, dave_token
):
    await _grant(dave, "view_streamlog")
    missing_stop = await async_client.post(
        f"/streams/{MISSING}/stop", headers=_bearer(dave_token)
    )

    read = await async_client.get(
        f"/streams/{alice_log.pk}/events", headers=_bearer(dave_token)
    )
    stop = await async_client.post(
        f"/streams/{alice_live.pk}/stop", headers=_bearer(dave_token)
    )

    assert read.status_code == 200
    raw = "".join([chunk.decode() async for chunk in read.streaming_content])
    events, _, _ = parse_sse(raw)
    assert token_text(events) == "Hello, Alice!"
    assert events[-1].event == "done"
    assert (stop.status_code, stop.content) == (404, missing_stop.content)
    assert stop.json() == {"error": "not_found", "message": "No such stream."}
    assert (await StreamLog.objects.aget(pk=alice_live.pk)).status == "streaming"


async def test_staff_who_may_view_and_stop_stream_logs_stop_them(
    async_client, alice_log, alice_live, dave, dave_token
):
    await _grant(dave, "view_streamlog", "stop_streamlog")

    running = await async_client.post(
        f"/streams/{alice_live.pk}/stop", headers=_bearer(dave_token)
    )
    finished = await async_client.post(
        f"/streams/{alice_log.pk}/stop", headers=_bearer(dave_token)
    )

    # The stream runs on no process here: the Stop goes out as a message.
    assert (running.status_code, running.json()) == (
        202,
        {"id": alice_live.pk, "status": "stopping"},
    )
    assert (finished.status_code, finished.json()) == (
        200,
        {"id": alice_log.pk, "status": "completed"},
    )


async def test_resuming_anothers_stream_by_last_event_id_needs_the_view_permission(
    async_client, alice_log, dave, dave_token
):
    headers = {**_bearer(dave_token), "Last-Event-ID": f"{alice_log.pk}:0"}

    refused = await async_client.get("/chat/stream", headers=headers)
    await _grant(dave, "view_streamlog")
    allowed = await async_client.get("/chat/stream", headers=headers)

    assert (refused.status_code, refused.json()["error"]) == (404, "not_found")
    assert allowed.status_code == 200
    raw = "".join([chunk.decode() async for chunk in allowed.streaming_content])
    assert token_text(parse_sse(raw)[0]) == "Hello, Alice!"
    # Resuming never starts a stream.
    assert await StreamLog.objects.acount() == 1


def _live_tail(client, stream_id: int):
    return client.get(f"/admin/streaming/streamlog/{stream_id}/live/")


def test_the_admin_live_tail_needs_the_view_permission(client, dave, alice_live):
    client.force_login(dave)

    missing = _live_tail(client, MISSING)
    refused = _live_tail(client, alice_live.pk)
    Permission.objects.get(codename="view_streamlog").user_set.add(dave)
    allowed = _live_tail(client, alice_live.pk)

    assert missing.status_code == 404
    assert (refused.status_code, refused.content) == (404, missing.content)
    assert allowed.status_code == 200
    assert f"/streams/{alice_live.pk}/events" in allowed.content.decode()
