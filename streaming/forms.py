from django import forms
from django.conf import settings

from streaming import providers


class StartForm(forms.Form):
    """What starts a stream: a prompt, and optionally a configured provider and model."""

    prompt = forms.CharField(strip=False, required=False)
    provider = forms.CharField(required=False)
    model = forms.CharField(required=False, max_length=128)
    conversation = forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    regenerate = forms.BooleanField(required=False)

    def __init__(self, *args: object, single_turn: bool = False, **kwargs: object):
        super().__init__(*args, **kwargs)
        if single_turn:
            # The seed's GET endpoint answers one prompt, outside any conversation.
            del self.fields["conversation"], self.fields["regenerate"]

    def clean_prompt(self) -> str:
        prompt = self.cleaned_data["prompt"]
        if len(prompt) > settings.MAX_PROMPT_CHARS:
            raise forms.ValidationError(
                f"The prompt is longer than {settings.MAX_PROMPT_CHARS} characters.",
                code="too_long",
            )
        if "\x00" in prompt:
            raise forms.ValidationError("The prompt contains a NUL character.")
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError:
            raise forms.ValidationError("The prompt is not valid Unicode.") from None
        return prompt

    def clean(self) -> dict:
        data = super().clean()
        data.setdefault("conversation", None)
        data.setdefault("regenerate", False)
        if data["regenerate"] and data["conversation"] is None:
            self.add_error("conversation", "Regenerate needs a conversation.")
        if not data["regenerate"] and "prompt" in data and not data["prompt"].strip():
            self.add_error("prompt", "The prompt is empty.")
        name = data.get("provider") or providers.default_name()
        provider = providers.get(name)
        if provider is None:
            offered = ", ".join(providers.configured())
            self.add_error(
                "provider", f"Unknown provider {name!r}; choose one of: {offered}."
            )
            return data
        model = data.get("model") or provider.default_model
        if model not in provider.models:
            offered = ", ".join(provider.models)
            self.add_error(
                "model", f"Unknown model {model!r}; choose one of: {offered}."
            )
        data["provider"], data["model"] = name, model
        return data

    @property
    def is_too_long(self) -> bool:
        return self.has_error("prompt", code="too_long")

    def message(self) -> str:
        return " ".join(str(e) for errors in self.errors.values() for e in errors)
