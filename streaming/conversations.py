"""Starting a turn: the rows one stream needs, written in one transaction."""

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from streaming.models import Conversation, Message, StreamLog
from streaming.providers import Message as ProviderMessage


class NoSuchConversation(Exception):
    pass


class NothingToRegenerate(Exception):
    pass


@dataclass(frozen=True)
class Turn:
    log: StreamLog
    conversation: Conversation | None
    messages: list[ProviderMessage]


@transaction.atomic
def begin(
    user: AbstractBaseUser,
    *,
    prompt: str,
    provider: str,
    model: str,
    conversation_id: int | None,
    new_conversation: bool,
    regenerate: bool = False,
    client_addr: str | None = None,
    user_agent: str = "",
) -> Turn:
    """Create the stream log (and the conversation's messages) for one answer.

    With `regenerate`, the conversation's last answer is replaced by a new one to its
    last prompt. Raises `NoSuchConversation` for another user's conversation and
    `NothingToRegenerate` when there is no prompt to answer again.
    """
    conversation = None
    if conversation_id is not None:
        conversation = (
            Conversation.objects.select_for_update()
            .filter(pk=conversation_id, owner=user)
            .first()
        )
        if conversation is None:
            raise NoSuchConversation()
    elif new_conversation:
        conversation = Conversation.objects.create(
            owner=user, title=Conversation.title_for(prompt)
        )

    if regenerate:
        prompt = _forget_last_answer(conversation)
    elif conversation is not None:
        conversation.messages.create(role=Message.Role.USER, content=prompt)

    log = StreamLog.objects.create(
        user=user,
        conversation=conversation,
        provider=provider,
        model=model,
        prompt=prompt,
        client_addr=client_addr,
        user_agent=user_agent[:512],
    )
    if conversation is None:
        return Turn(log, None, [{"role": "user", "content": prompt}])

    messages = conversation.context(
        max_messages=settings.MAX_CONTEXT_MESSAGES, max_chars=settings.MAX_CONTEXT_CHARS
    )
    conversation.messages.create(role=Message.Role.ASSISTANT, stream=log)
    conversation.updated_at = timezone.now()
    conversation.save(update_fields=["updated_at"])
    return Turn(log, conversation, messages)


def _forget_last_answer(conversation: Conversation | None) -> str:
    """Delete the messages after the last prompt and return that prompt."""
    last_prompt = None
    if conversation is not None:
        last_prompt = conversation.messages.filter(role=Message.Role.USER).last()
    if last_prompt is None:
        raise NothingToRegenerate()
    conversation.messages.filter(pk__gt=last_prompt.pk).delete()
    return last_prompt.content
