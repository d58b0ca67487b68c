from django.urls import path, register_converter

from streaming.api import aisdk, openai_compat
from streaming.api import views as api
from streaming.api.chat_request import CHAT_ID
from streaming.pages import views as pages


class IdConverter:
    """A primary key: at most 18 digits, so it always fits a 64-bit column (a longer
    number would make the database raise instead of answering 404)."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


class ChatIdConverter:
    """An AI SDK chat id, as `useChat` puts it in the resume URL."""

    regex = CHAT_ID

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(IdConverter, "id")
register_converter(ChatIdConverter, "chat_id")

app_name = "streaming"

urlpatterns = [
    path("", pages.chat, name="chat"),
    path("c/<id:conversation_id>/", pages.chat, name="conversation"),
    path(
        "c/<id:conversation_id>/rename",
        pages.rename_conversation,
        name="conversation-rename",
    ),
    path(
        "c/<id:conversation_id>/delete",
        pages.delete_conversation,
        name="conversation-delete",
    ),
    path("chat/stream", api.chat_stream, name="chat-stream"),
    path("streams/", api.start_stream, name="stream-start"),
    path("streams/<id:stream_id>/events", api.stream_events, name="stream-events"),
    path("streams/<id:stream_id>/stop", api.stop_stream, name="stream-stop"),
    # The AI SDK's useChat (streaming/api/aisdk.py).
    path("api/chat", aisdk.chat, name="aisdk-chat"),
    path("api/chat/<chat_id:chat_id>/stream", aisdk.chat_stream, name="aisdk-resume"),
    path("api/chat/<chat_id:chat_id>/stop", aisdk.chat_stop, name="aisdk-stop"),
    # The OpenAI-compatible API (streaming/api/openai_compat.py).
    path(
        "v1/chat/completions",
        openai_compat.chat_completions,
        name="openai-chat-completions",
    ),
    path("v1/models", openai_compat.models, name="openai-models"),
    path("v1/models/<path:model_id>", openai_compat.model, name="openai-model"),
]
