"""Forms of the model provider pages."""

from __future__ import annotations

from typing import Any

from django import forms

from agents.choices import ProviderKind
from controlplane.dashboard.forms import (
    CreateOrEditForm,
    JSONTextField,
    tags_field,
    write_only_text,
)

MODELS_HELP = (
    'JSON list, prices in USD per million tokens: [{"name": "gpt-4o-mini", '
    '"input_per_mtok": 0.15, "output_per_mtok": 0.6}].'
)


class ProviderForm(CreateOrEditForm):
    kind = forms.ChoiceField(choices=ProviderKind.choices)
    base_url = forms.URLField(
        max_length=500,
        assume_scheme="https",
        required=False,
        label="Base URL",
        help_text="OpenAI-compatible only; blank means https://api.openai.com/v1.",
    )
    api_key = write_only_text(
        max_length=5000,
        required=False,
        label="API key",
        help_text="Write-only: stored encrypted and never shown again.",
    )
    clear_api_key = forms.BooleanField(required=False, label="Remove the stored API key")
    api_key_env = forms.CharField(
        max_length=100,
        required=False,
        label="API key from environment variable",
        help_text="Used when no key is stored, e.g. OPENAI_API_KEY.",
    )
    models = JSONTextField(
        expect=list, required=False, blank_value=[], rows=6, help_text=MODELS_HELP
    )
    timeout_seconds = forms.IntegerField(min_value=1, max_value=900, initial=60)
    max_concurrency = forms.IntegerField(
        min_value=1,
        max_value=10000,
        initial=100,
        required=False,
        label="Most requests at once",
        help_text="Across every worker; more wait for a slot. Blank keeps the current value "
        "(100 for a new provider).",
    )
    tags = tags_field()

    def __init__(self, *args, has_key: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if self.creating:
            del self.fields["clear_api_key"]
        elif has_key:
            self.fields[
                "api_key"
            ].help_text = "A key is stored (hidden). Leave blank to keep it, or type a new one."
        else:
            self.fields["api_key"].help_text = "No key is stored. Write-only once saved."
            del self.fields["clear_api_key"]

    def service_fields(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        clear = data.pop("clear_api_key", False)
        if data.get("max_concurrency") is None:
            data.pop("max_concurrency", None)
        if not self.creating:
            # None keeps the stored key; "" clears it
            data["api_key"] = "" if clear else (data["api_key"] or None)
        return data
