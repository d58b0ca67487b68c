import hashlib
import secrets

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone

TOKEN_PREFIX = "relay_"


class Conversation(models.Model):
    """A chat: the turns a user and a model took, newest conversations first."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200)
    # The id an AI SDK chat (`useChat({id})`) knows it by; ids are the owner's own.
    chat_id = models.CharField(max_length=128, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "chat_id"],
                condition=~models.Q(chat_id=""),
                name="conversation_chat_id_per_owner",
            )
        ]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("streaming:conversation", args=[self.pk])

    @staticmethod
    def title_for(prompt: str) -> str:
        """A title from the first prompt: its first words on one line."""
        words = " ".join(prompt.split())
        return words if len(words) <= 60 else words[:59].rstrip() + "…"

    def context(self, *, max_messages: int, max_chars: int) -> list[dict[str, str]]:
        """The latest turns, as provider messages, within both bounds.

        The newest user message is always included (cut to `max_chars` if need be);
        failed answers are skipped, and the result starts with a user message and
        alternates roles, as both providers require.
        """
        turns: list[dict[str, str]] = []
        for message in self.messages.select_related("stream").order_by(
            "-created_at", "-id"
        ):
            text = message.text
            if not text:
                continue
            if turns and turns[0]["role"] == message.role:
                turns[0]["content"] = text + "\n\n" + turns[0]["content"]
            else:
                turns.insert(0, {"role": message.role, "content": text})
        kept: list[dict[str, str]] = []
        used = 0
        for turn in reversed(turns):
            if kept and (
                len(kept) >= max_messages or used + len(turn["content"]) > max_chars
            ):
                break
            kept.insert(
                0, {"role": turn["role"], "content": turn["content"][-max_chars:]}
            )
            used += len(turn["content"])
        while kept and kept[0]["role"] != Message.Role.USER:
            kept.pop(0)
        return kept


class StreamLogQuerySet(models.QuerySet):
    def in_flight(self) -> "StreamLogQuerySet":
        return self.filter(status=StreamLog.Status.STREAMING)


class StreamLog(models.Model):
    """One stream: who asked what of which model, what came back, and how it went."""

    class Status(models.TextChoices):
        STREAMING = "streaming"
        COMPLETED = "completed"
        ERROR = "error"
        CANCELLED = "cancelled"
        INTERRUPTED = "interrupted"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    # Kept when its conversation is deleted: the log is the record of what was spent.
    conversation = models.ForeignKey(
        Conversation,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="streams",
    )
    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=128)
    prompt = models.TextField()
    # The system prompt the model was given (SYSTEM_PROMPT, or the request's own).
    system_prompt = models.TextField(blank=True)
    response = models.TextField(blank=True)
    # The model's reasoning ("thinking"), sent apart from the answer; each span
    # [at, length] says `length` characters of it came when the answer was `at`
    # characters long (`relay.joined.join` puts the two back in their order).
    reasoning = models.TextField(blank=True)
    reasoning_spans = models.JSONField(default=list, blank=True, editable=False)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.STREAMING, db_index=True
    )
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)
    error_retry_after = models.FloatField(
        null=True, blank=True, help_text="seconds the client was told to wait"
    )
    ttft_ms = models.PositiveIntegerField("time to first token (ms)", null=True)
    duration_ms = models.PositiveIntegerField(null=True)
    # As the provider counted them (`providers.base.Usage`): the input counts the whole
    # prompt, its cached part included; the output counts the reasoning.
    input_tokens = models.PositiveIntegerField(null=True)
    cached_input_tokens = models.PositiveIntegerField(
        null=True, help_text="of the input, read from the provider's prompt cache"
    )
    cache_write_tokens = models.PositiveIntegerField(
        null=True, help_text="of the input, written to the provider's prompt cache"
    )
    output_tokens = models.PositiveIntegerField(null=True)
    reasoning_tokens = models.PositiveIntegerField(
        null=True, help_text="of the output, the model's reasoning"
    )
    # From MODEL_PRICES (`accounting.costs`); empty when the model has no price.
    cost = models.DecimalField(
        max_digits=18,
        decimal_places=9,
        null=True,
        help_text="in the currency of MODEL_PRICES",
    )
    # True when the provider reported no usage (stopped, failed or orphaned streams) and
    # the counts above are our estimate from the text.
    tokens_estimated = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(
        default=1,
        help_text="provider calls made, retries before the first token included",
    )
    client_addr = models.GenericIPAddressField(null=True)
    user_agent = models.CharField(max_length=512, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True)

    objects = StreamLogQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "-created_at"]),
            # Each start counts the user's streams in flight (accounting.limits).
            models.Index(
                fields=["user", "updated_at"],
                condition=models.Q(status="streaming"),
                name="streamlog_user_in_flight",
            ),
        ]
        # Reading another user's stream is `view_streamlog`; stopping it is this.
        permissions = [("stop_streamlog", "Can stop another user's stream")]

    def __str__(self) -> str:
        return f"Stream {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status != self.Status.STREAMING


class Message(models.Model):
    """One turn. A user's turn holds its text; an assistant's turn is its stream."""

    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    stream = models.OneToOneField(
        StreamLog,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="message",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.role}: {self.text[:40]}"

    @property
    def text(self) -> str:
        if self.role == self.Role.USER:
            return self.content
        return self.stream.response if self.stream else ""


class UsageLimit(models.Model):
    """One user's own limits; an empty field means the site-wide default (settings)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_limit"
    )
    concurrent_streams = models.PositiveIntegerField(null=True, blank=True)
    starts_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_day = models.PositiveIntegerField(
        null=True, blank=True, help_text="0 means unlimited"
    )
    cost_per_day = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="in the currency of MODEL_PRICES; 0 means unlimited",
    )

    def __str__(self) -> str:
        return f"Limits of {self.user}"


class ApiToken(models.Model):
    """A personal API token for programs; only its SHA-256 is stored."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def hash(raw: str) -> str:
        return hashlib.sha256(raw.encode()).hexdigest()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def generate(self) -> str:
        """Give this token a fresh secret and return it; it is never retrievable later."""
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.prefix = raw[: len(TOKEN_PREFIX) + 6]
        self.key_hash = self.hash(raw)
        return raw
