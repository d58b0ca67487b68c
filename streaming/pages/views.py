"""The pages people see: the chat and its conversations (the API is in `api`)."""

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from streaming import providers
from streaming.models import Conversation


class RenameForm(forms.Form):
    title = forms.CharField(max_length=200)


@login_required
def chat(request: HttpRequest, conversation_id: int | None = None) -> HttpResponse:
    conversation = None
    messages = []
    if conversation_id is not None:
        conversation = get_object_or_404(
            Conversation, pk=conversation_id, owner=request.user
        )
        messages = conversation.messages.select_related("stream")
    offered = list(providers.configured().values())
    context = {
        "conversation": conversation,
        "conversations": request.user.conversations.all()[:100],
        "messages": messages,
        "providers": offered,
        "default_provider": providers.default_name(),
        "demo_only": [p.name for p in offered] == ["demo"],
        "max_prompt_chars": settings.MAX_PROMPT_CHARS,
        "page_data": {
            "conversationId": conversation.pk if conversation else None,
            "streamsUrl": reverse("streaming:stream-start"),
        },
    }
    return render(request, "streaming/chat.html", context)


@require_POST
@login_required
def rename_conversation(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = get_object_or_404(
        Conversation, pk=conversation_id, owner=request.user
    )
    form = RenameForm(request.POST)
    if form.is_valid():
        conversation.title = form.cleaned_data["title"]
        conversation.save(update_fields=["title"])
    return redirect(conversation)


@require_POST
@login_required
def delete_conversation(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = get_object_or_404(
        Conversation, pk=conversation_id, owner=request.user
    )
    # Its stream logs stay (conversation set to NULL): they are the record of spending.
    conversation.delete()
    return redirect("streaming:chat")
