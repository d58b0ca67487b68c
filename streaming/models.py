import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

TOKEN_PREFIX = "relay_"


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
    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=128)
    prompt = models.TextField()
    response = models.TextField(blank=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.STREAMING, db_index=True
    )
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)
    ttft_ms = models.PositiveIntegerField("time to first token (ms)", null=True)
    duration_ms = models.PositiveIntegerField(null=True)
    input_tokens = models.PositiveIntegerField(null=True)
    output_tokens = models.PositiveIntegerField(null=True)
    client_addr = models.GenericIPAddressField(null=True)
    user_agent = models.CharField(max_length=512, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True)

    objects = StreamLogQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "-created_at"])]

    def __str__(self) -> str:
        return f"Stream {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status != self.Status.STREAMING


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

    async def atouch(self) -> None:
        """Record use, at most once a minute, so a busy token does not write per request."""
        now = timezone.now()
        if self.last_used_at and now - self.last_used_at < timedelta(minutes=1):
            return
        self.last_used_at = now
        await ApiToken.objects.filter(pk=self.pk).aupdate(last_used_at=now)
