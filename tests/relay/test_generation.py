"""`generation.start` in this process with the demo provider: no relay process, no
Redis needed (with REDIS_URL set the same code runs on it)."""

import pytest
from asgiref.sync import sync_to_async
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

from streaming import conversations
from streaming.accounting import limits
from streaming.models import Conversation, Message, StreamLog
from streaming.relay import generation, hub
from streaming.relay.joined import Position
from tests.helpers import finished_log, parse_sse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

CLIENT = conversations.Client(addr="127.0.0.1", user_agent="tests")


@pytest.fixture(autouse=True)
def _quick_demo(settings) -> None:
    settings.DEMO_TOKEN_DELAY_MS = 0


async def _start(user, **arguments) -> conversations.Turn:
    arguments.setdefault("prompt", "Say hello")
    arguments.setdefault("provider", "demo")
    arguments.setdefault("model", "demo")
    arguments.setdefault("conversation", conversations.NEW)
    return await generation.start(user, **arguments, client=CLIENT)


async def _read(stream: StreamLog) -> str:
    frames = await hub.get().follow(stream, user_id=stream.user_id)
    return "".join([frame async for frame in frames])


async def test_it_streams_an_answer_and_records_it(alice):
    turn = await _start(alice)

    events, _, retry = parse_sse(await _read(turn.stream))
    log = await finished_log(turn.stream.pk)

    assert [e.event for e in events][:2] == ["meta", "token"]
    assert [e.event for e in events][-2:] == ["usage", "done"]
    answer = "".join(e.data for e in events if e.event == "token")
    assert "offline demo provider" in answer and answer == log.response
    assert log.status == StreamLog.Status.COMPLETED and log.output_tokens > 0
    assert (log.client_addr, log.user_agent) == ("127.0.0.1", "tests")
    assert retry is not None


async def test_a_new_conversation_gets_the_prompt_and_the_answer(alice):
    turn = await _start(alice, prompt="What is SSE?")
    await finished_log(turn.stream.pk)

    roles = await sync_to_async(list)(
        Message.objects.filter(conversation=turn.conversation).values_list(
            "role", "content", "stream_id"
        )
    )
    assert roles == [("user", "What is SSE?", None), ("assistant", "", turn.stream.pk)]
    assert turn.messages == [{"role": "user", "content": "What is SSE?"}]


async def test_a_failed_start_gives_its_slot_back(alice, bob, settings):
    settings.LIMIT_CONCURRENT_STREAMS = 1
    bobs = await Conversation.objects.acreate(owner=bob, title="Bob's")

    with pytest.raises(conversations.NoSuchConversation):
        await _start(alice, conversation=bobs.pk)
    with pytest.raises(conversations.NothingToRegenerate):
        await _start(alice, conversation=None, regenerate=True)

    first = await _start(alice)  # the slot is still free
    with pytest.raises(limits.LimitExceeded) as refused:
        await _start(alice)
    assert refused.value.status == 429 and refused.value.retry_after
    await finished_log(first.stream.pk)  # its finished row is its slot given back
    await finished_log((await _start(alice)).stream.pk)
    assert await StreamLog.objects.filter(user=alice).acount() == 2


async def test_a_stream_whose_task_cannot_start_ends_and_frees_its_slot(
    alice, settings, monkeypatch
):
    settings.LIMIT_CONCURRENT_STREAMS = 1

    async def broken(*arguments: object) -> None:
        raise RuntimeError("no task")

    monkeypatch.setattr(generation, "_spawn", broken)
    with pytest.raises(RuntimeError):
        await _start(alice)
    monkeypatch.undo()

    log = await StreamLog.objects.aget(user=alice)
    assert (log.status, log.error_code) == ("error", "internal")
    assert log.finished_at is not None
    await finished_log((await _start(alice)).stream.pk)  # the slot is free


async def test_a_cache_that_is_away_does_not_fail_a_start(alice, monkeypatch):
    def away(*arguments: object, **options: object) -> int:
        raise ConnectionError("the cache is away")

    # Where the day's tokens are counted (Redis in production, here local memory).
    monkeypatch.setattr(LocMemCache, "incr", away)
    monkeypatch.setattr(RedisCache, "incr", away)
    turn = await _start(alice)

    log = await finished_log(turn.stream.pk)
    assert (log.status, log.error_code) == (StreamLog.Status.COMPLETED, "")
    assert "offline demo provider" in log.response


async def test_a_draining_process_starts_nothing(alice):
    hub.get().draining = True

    with pytest.raises(hub.Draining) as refused:
        await _start(alice)

    assert (refused.value.status, refused.value.retry_after) == (503, 1)
    assert not await StreamLog.objects.filter(user=alice).aexists()


async def test_stop_ends_it_cancelled_with_the_partial_answer(alice, settings):
    settings.DEMO_TOKEN_DELAY_MS = 20
    turn = await _start(alice)
    frames = await hub.get().follow(turn.stream, user_id=turn.stream.user_id)
    seen = ""
    async for frame in frames:
        seen += frame
        if seen.count("event: token") >= 3:
            await hub.get().stop(turn.stream.pk)
    events, _, _ = parse_sse(seen)
    log = await finished_log(turn.stream.pk)

    assert events[-1].event == "error"
    assert (
        '"code": "stopped"' in events[-1].data
        and '"retryable": false' in events[-1].data
    )
    assert log.status == StreamLog.Status.CANCELLED and log.error_code == "stopped"
    assert 0 < len(log.response) and log.response.startswith(
        "".join(e.data for e in events if e.event == "token")[:10]
    )
    assert log.tokens_estimated


async def test_a_viewer_resumes_from_its_offset(alice):
    turn = await _start(alice)
    log = await finished_log(turn.stream.pk)

    frames = await hub.get().follow(log, user_id=log.user_id, after=Position(10))
    events, _, _ = parse_sse("".join([frame async for frame in frames]))

    assert "".join(e.data for e in events if e.event == "token") == log.response[10:]
    with pytest.raises(hub.BadOffset):
        await hub.get().follow(
            log, user_id=log.user_id, after=Position(len(log.response) + 1)
        )
    assert (
        await hub.get().follow(
            log, user_id=log.user_id, after=Position(len(log.response))
        )
        is None
    )
