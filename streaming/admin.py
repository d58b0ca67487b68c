import datetime as dt

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import Field
from django.forms import Script
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from streaming.accounting import charts, costs, usage
from streaming.models import ApiToken, Conversation, Message, StreamLog, UsageLimit

_MARKDOWN = Script("streaming/admin.js", type="module")
# The settings behind each UsageLimit field left empty.
_LIMIT_DEFAULTS = {
    "concurrent_streams": "LIMIT_CONCURRENT_STREAMS",
    "starts_per_minute": "LIMIT_STARTS_PER_MINUTE",
    "tokens_per_day": "LIMIT_TOKENS_PER_DAY",
    "cost_per_day": "LIMIT_COST_PER_DAY",
}
# The limits whose 0 means none.
_BUDGETS = ("LIMIT_TOKENS_PER_DAY", "LIMIT_COST_PER_DAY")


class UsageFilter(forms.Form):
    days = forms.IntegerField(min_value=1, max_value=366)
    user = forms.ModelChoiceField(
        User.objects.all(),
        to_field_name="username",
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "everyone"}),
        error_messages={"invalid_choice": "No user has this username."},
    )


class _LogFields:
    """The computed fields of a stream log's admin pages: links, folded text, times."""

    @admin.display(description="user")
    def user_link(self, log: StreamLog) -> str:
        url = reverse("admin:auth_user_change", args=[log.user_id])
        return format_html('<a href="{}">{}</a>', url, log.user)

    @admin.display(description="conversation")
    def conversation_link(self, log: StreamLog) -> str:
        if log.conversation_id is None:
            return "-"
        url = reverse("admin:streaming_conversation_change", args=[log.conversation_id])
        return format_html('<a href="{}">{}</a>', url, log.conversation)

    @admin.display(description="answer")
    def answer(self, log: StreamLog) -> str:
        # Rendered as sanitised Markdown by admin.js; the raw text is the fallback.
        return format_html('<div class="markdown" data-markdown>{}</div>', log.response)

    # Not named `reasoning`: the admin would show the model field instead, unfolded.
    @admin.display(description="reasoning")
    def thinking(self, log: StreamLog) -> str:
        if not log.reasoning:
            return "-"
        return format_html(
            '<details><summary>{} characters</summary><div class="reasoning">{}</div>'
            "</details>",
            len(log.reasoning),
            log.reasoning,
        )

    @admin.display(description="error")
    def error(self, log: StreamLog) -> str:
        if not log.error_code:
            return "-"
        wait = log.error_retry_after
        retry = "" if wait is None else f" (retry after {wait:g} s)"
        return format_html(
            "<details><summary>{}{}</summary>{}</details>",
            log.error_code,
            retry,
            log.error_message,
        )

    @admin.display(description="timeline")
    def timeline(self, log: StreamLog) -> str:
        first = f"+{log.ttft_ms} ms" if log.ttft_ms is not None else "none"
        end = f"+{log.duration_ms} ms" if log.duration_ms is not None else "not yet"
        return format_html(
            "started {} · first token {} · ended {} ({}) · last written {}",
            log.created_at.isoformat(timespec="seconds"),
            first,
            end,
            log.status,
            log.updated_at.isoformat(timespec="seconds"),
        )

    @admin.display(description="watch")
    def live(self, log: StreamLog) -> str:
        url = reverse("admin:streaming_streamlog_live", args=[log.pk])
        label = "Live tail" if not log.is_finished else "Replay"
        return format_html('<a href="{}">{}</a>', url, label)


@admin.register(StreamLog)
class StreamLogAdmin(_LogFields, admin.ModelAdmin):
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
        "cost",
        "created_at",
        "live",
    )
    list_filter = ("status", "provider", "model", "user", "created_at")
    list_select_related = ("user",)
    search_fields = ("prompt", "response", "user__username", "user__email")
    date_hierarchy = "created_at"
    list_per_page = 50
    fields = (
        ("user_link", "conversation_link", "status"),
        ("provider", "model"),
        "system_prompt",
        "prompt",
        "answer",
        "thinking",
        "error",
        ("ttft_ms", "duration_ms"),
        ("input_tokens", "cached_input_tokens", "cache_write_tokens"),
        ("output_tokens", "reasoning_tokens"),
        ("tokens_estimated", "cost"),
        ("client_addr", "user_agent"),
        "timeline",
        "live",
    )
    readonly_fields = (
        "user_link",
        "conversation_link",
        "answer",
        "thinking",
        "error",
        "timeline",
        "live",
    )

    class Media:
        css = {"all": ["streaming/admin.css"]}
        js = [_MARKDOWN]

    def get_urls(self):
        live = self.admin_site.admin_view(self.live_view)
        usage_view = self.admin_site.admin_view(self.usage_view)
        return [
            path("<int:stream_id>/live/", live, name="streaming_streamlog_live"),
            path("usage/", usage_view, name="streaming_streamlog_usage"),
            *super().get_urls(),
        ]

    def live_view(self, request: HttpRequest, stream_id: int) -> HttpResponse:
        """Staff who may view stream logs watch any stream as one more (read-only)
        viewer; finished ones replay."""
        log = get_object_or_404(StreamLog, pk=stream_id)
        if not self.has_view_permission(request, log):
            # As for a missing stream: the stream events refuse them the same way.
            raise Http404("No StreamLog matches the given query.")
        context = {
            **self.admin_site.each_context(request),
            "title": f"Stream {log.pk}",
            "log": log,
            "opts": self.model._meta,
            "events_url": reverse("streaming:stream-events", args=[log.pk]),
        }
        return TemplateResponse(request, "admin/streaming/streamlog/live.html", context)

    def usage_view(self, request: HttpRequest) -> HttpResponse:
        """Streams and tokens per user per UTC day: a table and charts, or CSV."""
        # Everyone's usage is stream-log data: show it to those who may see the logs.
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = UsageFilter({"days": "30"} | request.GET.dict())
        context = {
            **self.admin_site.each_context(request),
            "title": "Usage",
            "opts": self.model._meta,
            "form": form,
        }
        template = "admin/streaming/streamlog/usage.html"
        if not form.is_valid():
            return TemplateResponse(request, template, context, status=400)
        days, user = form.cleaned_data["days"], form.cleaned_data["user"]
        since = usage.first_day(days)
        rows = usage.rows(since=since, user_id=user.pk if user else None)
        if request.GET.get("format") == "csv":
            return _csv_response(usage.to_csv(rows), since=since)
        scope = f"last {days} days" + (f", {user.username}" if user else "")
        context |= _usage_tables(rows, since=since, scope=scope)
        return TemplateResponse(request, template, context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


def _usage_tables(rows: list[usage.Row], *, since: dt.date, scope: str) -> dict:
    """The usage page's rows, their totals and charts, and whether to show cost."""
    daily = usage.daily(rows, since=since, until=usage.today())
    totals = usage.totals(rows)
    return {
        "rows": rows,
        "totals": totals,
        "charts": charts.for_days(daily, scope=scope),
        # Without prices there is no cost, unless rows kept one from before.
        "show_cost": costs.is_priced() or totals["cost"] is not None,
    }


def _csv_response(text: str, *, since: dt.date) -> HttpResponse:
    response = HttpResponse(text, content_type="text/csv; charset=utf-8")
    filename = f"usage-{since}-{usage.today()}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class _LimitDefaultsHelp:
    """Says under each limit field which site default an empty field stands for."""

    def formfield_for_dbfield(self, db_field: Field, request: HttpRequest, **kwargs):
        formfield = super().formfield_for_dbfield(db_field, request, **kwargs)
        setting = _LIMIT_DEFAULTS.get(db_field.name)
        if formfield is not None and setting:
            default = getattr(settings, setting)
            shown = (
                "unlimited" if setting in _BUDGETS and not default else f"{default:,}"
            )
            own = f"{db_field.help_text}. " if db_field.help_text else ""
            formfield.help_text = f"{own}Empty: the site default ({shown})."
        return formfield


@admin.register(UsageLimit)
class UsageLimitAdmin(_LimitDefaultsHelp, admin.ModelAdmin):
    list_display = ("user", *_LIMIT_DEFAULTS)
    list_select_related = ("user",)
    search_fields = ("user__username",)
    autocomplete_fields = ("user",)
    empty_value_display = "default"


class UsageLimitInline(_LimitDefaultsHelp, admin.StackedInline):
    model = UsageLimit
    max_num = 1
    verbose_name_plural = "usage limits"
    fields = tuple(_LIMIT_DEFAULTS)


admin.site.unregister(User)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    inlines = [*BaseUserAdmin.inlines, UsageLimitInline]

    def get_inline_instances(self, request: HttpRequest, obj: User | None = None):
        # The add form stays Django's two-step one: limits come once the user exists.
        return super().get_inline_instances(request, obj) if obj else []


class MessageInline(admin.TabularInline):
    model = Message
    fields = ("role", "text", "stream")
    readonly_fields = ("role", "text", "stream")
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("title", "owner", "created_at", "updated_at")
    list_select_related = ("owner",)
    search_fields = ("title", "owner__username")
    date_hierarchy = "created_at"
    readonly_fields = ("owner", "created_at", "updated_at")
    inlines = [MessageInline]


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
