"""LLM providers behind one interface (`base.Provider`), chosen by name here.

Each provider module holds only its wire format; the contract, the errors, the retry
policy and the SDK error mapping are in `base`.
"""

from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from streaming.providers.base import Provider


@cache
def configured() -> dict[str, Provider]:
    """The providers this deployment offers, by name, in preference order."""
    from streaming.providers import anthropic, demo, openai

    found: dict[str, Provider] = {}
    if settings.OPENAI_API_KEY:
        found["openai"] = openai.OpenAIProvider()
    if settings.ANTHROPIC_API_KEY:
        found["anthropic"] = anthropic.AnthropicProvider()
    if settings.DEMO_PROVIDER or not found:
        found["demo"] = demo.DemoProvider()
    return found


def default_name() -> str:
    name = settings.DEFAULT_PROVIDER or next(iter(configured()))
    if name not in configured():
        raise ImproperlyConfigured(f"DEFAULT_PROVIDER {name!r} is not configured.")
    return name


def get(name: str) -> Provider | None:
    return configured().get(name)


@receiver(setting_changed)
def _forget_configured(**kwargs: object) -> None:
    configured.cache_clear()
