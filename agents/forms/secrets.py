"""Forms of the secret pages: values are write-only."""

from __future__ import annotations

from django import forms

from controlplane.dashboard.forms import (
    DashboardForm,
    slug_field,
    write_only_text,
)


class SecretCreateForm(DashboardForm):
    name = slug_field(help_text="1-50 lowercase letters, digits and hyphens; tools refer to it.")
    description = forms.CharField(required=False, max_length=1000)
    value = write_only_text(
        max_length=20000, help_text="Stored encrypted; never shown again, not even to you."
    )


class SecretUpdateForm(DashboardForm):
    description = forms.CharField(required=False, max_length=1000)
    value = write_only_text(
        max_length=20000,
        required=False,
        label="New value",
        help_text="Leave blank to keep the stored value.",
    )
