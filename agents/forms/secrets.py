"""Forms of the secret pages: values are write-only."""

from __future__ import annotations

from django import forms

from controlplane.dashboard.forms import (
    DashboardForm,
    slug_field,
)


class SecretCreateForm(DashboardForm):
    name = slug_field(help_text="1-50 lowercase letters, digits and hyphens; tools refer to it.")
    description = forms.CharField(required=False, max_length=1000)
    value = forms.CharField(
        max_length=20000,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Stored encrypted; never shown again, not even to you.",
    )


class SecretUpdateForm(DashboardForm):
    description = forms.CharField(required=False, max_length=1000)
    value = forms.CharField(
        max_length=20000,
        strip=False,
        required=False,
        label="New value",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Leave blank to keep the stored value.",
    )
