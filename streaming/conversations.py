"""Starting a turn: the rows one stream needs, written in one transaction."""

from dataclasses import dataclass
from typing import Literal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from streaming.errors import Refused
from streaming.models import Conversation, Message, StreamLog

# `conversation=NEW` starts a conversation with the turn.
NEW: Literal["new"] = "new"


class NoSuchConversation(Refused):
    status = 404
    code = "not_found"
    message = "No such conversation."


class NothingToRegenerate(Refused):
    message = "There is no prompt to answer again."


@dataclass(frozen=True)
class ChatId:
    """The id of an AI SDK chat: it names one of its owner's conversations (each
    user's ids are their own), and a new id starts one."""

    value: str


@dataclass(frozen=True)
class Client:
    """Who sent the request that starts a stream, as its row records it."""

    addr: str | None = None
    user_agent: str = ""


@dataclass(frozen=True)
class Turn:
    stream: StreamLog
    conversation: Conversation | None
    messages: list[dict[str, str]]  # what the provider receives, oldest first


@transaction.atomic
def begin(
    user: AbstractBaseUser,
    *,
    prompt: str,
    provider: str,
    model: str,
    conversation: int | Literal["new"] | ChatId | None,
    regenerate: bool = False,
    client: Client = Client(),
    history: list[dict[str, str]] | None = None,
    system_prompt: str = "",
) -> Turn:
    """Create the stream's row (and the conversation's messages) for one answer.

    `conversation`: the id of one of the user's conversations, `NEW` to start one, a
    `ChatId` (the user's conversation of that chat, started by its first prompt), or
    None for a single prompt outside any conversation. With `regenerate`, the
    conversation's last answer is replaced by a new one to its last prompt. Raises
    `NoSuchConversation` for another user's conversation and `NothingToRegenerate`
    when there is no prompt to answer again.

    `history` (with `conversation` None only): the messages the provider receives,
    oldest first, as a stateless client sent them, instead of `prompt` alone; the row
    records `prompt` (the caller's choice: the last user message). The row also
    records the `system_prompt` the provider is given.
    """
    conversation_id, conversation = conversation, None
    if isinstance(conversation_id, int):
        conversation = (
            Conversation.objects.select_for_update()
            .filter(pk=conversation_id, owner=user)
            .first()
        )
        if conversation is None:
            raise NoSuchConversation()
    elif isinstance(conversation_id, ChatId):
        conversation = _chat(user, conversation_id.value, prompt, create=not regenerate)
    elif conversation_id == NEW:
        conversation = Conversation.objects.create(
            owner=user, title=Conversation.title_for(prompt)
        )

    if regenerate:
        prompt = _forget_last_answer(conversation)
    elif conversation is not None:
        conversation.messages.create(role=Message.Role.USER, content=prompt)

    stream = StreamLog.objects.create(
        user=user,
        conversation=conversation,
        provider=provider,
        model=model,
        prompt=prompt,
        system_prompt=system_prompt,
        client_addr=client.addr,
        user_agent=client.user_agent[:512],
    )
    if conversation is None:
        messages = [{"role": "user", "content": prompt}] if history is None else history
        return Turn(stream, None, list(messages))

    messages = conversation.context(
        max_messages=settings.MAX_CONTEXT_MESSAGES, max_chars=settings.MAX_CONTEXT_CHARS
    )
    conversation.messages.create(role=Message.Role.ASSISTANT, stream=stream)
    conversation.updated_at = timezone.now()
    conversation.save(update_fields=["updated_at"])
    return Turn(stream, conversation, messages)


def _chat(
    user: AbstractBaseUser, chat_id: str, prompt: str, *, create: bool
) -> Conversation:
    """The user's conversation of chat `chat_id`, locked; with `create`, a new one
    if there is none yet (else `NoSuchConversation`)."""
    chats = Conversation.objects.select_for_update().filter(owner=user, chat_id=chat_id)
    if (conversation := chats.first()) is not None:
        return conversation
    if not create:
        raise NoSuchConversation()
    try:
        with transaction.atomic():
            return Conversation.objects.create(
                owner=user, chat_id=chat_id, title=Conversation.title_for(prompt)
            )
    except IntegrityError:
        # Another first prompt of the same new chat won the race (limits.admit's
        # lock on the user row normally orders them): join its conversation.
        return chats.get()


def _forget_last_answer(conversation: Conversation | None) -> str:
    """Delete the messages after the last prompt and return that prompt."""
    last_prompt = None
    if conversation is not None:
        last_prompt = conversation.messages.filter(role=Message.Role.USER).last()
    if last_prompt is None:
        raise NothingToRegenerate()
    conversation.messages.filter(pk__gt=last_prompt.pk).delete()
    return last_prompt.content
