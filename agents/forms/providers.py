"""Forms of the model provider pages."""

from __future__ import annotations

from typing import Any

from django import forms

from agents.choices import ProviderKind
from controlplane.dashboard.forms import (
    DashboardForm,
    JSONTextField,
    slug_field,
    tags_field,
)

MODELS_HELP = (
    'JSON list, prices in USD per million tokens: [{"name": "gpt-4o-mini", '
    '"input_per_mtok": 0.15, "output_per_mtok": 0.6}].'
)


class ProviderForm(DashboardForm):
    slug = slug_field()
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    kind = forms.ChoiceField(choices=ProviderKind.choices)
    base_url = forms.URLField(
        max_length=500,
        assume_scheme="https",
        required=False,
        label="Base URL",
        help_text="OpenAI-compatible only; blank means https://api.openai.com/v1.",
    )
    api_key = forms.CharField(
        max_length=5000,
        required=False,
        strip=False,
        label="API key",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
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
    tags = tags_field()

    def __init__(self, *args, creating: bool, has_key: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if creating:
            del self.fields["clear_api_key"]
        elif has_key:
            self.fields[
                "api_key"
            ].help_text = "A key is stored (hidden). Leave blank to keep it, or type a new one."
        else:
            self.fields["api_key"].help_text = "No key is stored. Write-only once saved."
            del self.fields["clear_api_key"]

    def service_fields(self, *, creating: bool) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        clear = data.pop("clear_api_key", False)
        if not creating:
            # None keeps the stored key; "" clears it
            data["api_key"] = "" if clear else (data["api_key"] or None)
        return data
