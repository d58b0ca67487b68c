from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils.html import format_html

from streaming.models import ApiToken, StreamLog


@admin.register(StreamLog)
class StreamLogAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "user",
        "status",
        "provider",
        "model",
        "ttft_ms",
        "duration_ms",
        "input_tokens",
        "output_tokens",
        "created_at",
    )
    list_filter = ("status", "provider", "model", "user", "created_at")
    list_select_related = ("user",)
    search_fields = ("prompt", "response", "user__username", "user__email")
    date_hierarchy = "created_at"
    list_per_page = 50
    readonly_fields = ("error",)
    fields = (
        ("user", "status"),
        ("provider", "model"),
        "prompt",
        "response",
        "error",
        ("ttft_ms", "duration_ms"),
        ("input_tokens", "output_tokens"),
        ("client_addr", "user_agent"),
        ("created_at", "updated_at", "finished_at"),
    )

    @admin.display(description="error")
    def error(self, log: StreamLog) -> str:
        if not log.error_code:
            return "-"
        return format_html(
            "<details><summary>{}</summary>{}</details>",
            log.error_code,
            log.error_message,
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "user",
        "prefix",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = ("revoked_at",)
    list_select_related = ("user",)
    search_fields = ("name", "user__username", "prefix")
    readonly_fields = ("prefix", "created_at", "last_used_at")
    fields = ("user", "name", "prefix", "created_at", "last_used_at", "revoked_at")

    def save_model(
        self, request: HttpRequest, token: ApiToken, form, change: bool
    ) -> None:
        raw = None if change else token.generate()
        super().save_model(request, token, form, change)
        if raw:
            self.message_user(
                request,
                f"Token {token.name!r} created: {raw} — copy it now, it is not shown again.",
                messages.WARNING,
            )
