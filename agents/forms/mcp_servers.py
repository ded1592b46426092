"""Forms of the MCP server pages."""

from __future__ import annotations

from django import forms

from agents.choices import McpTransport
from controlplane.dashboard.forms import (
    SLUG_HELP,
    CreateOrEditForm,
    ListTextField,
    slug_field,
    tags_field,
    write_only_json,
)


class McpServerForm(CreateOrEditForm):
    slug = slug_field(help_text=SLUG_HELP + " Its tools are named <slug>-<tool>.")
    transport = forms.ChoiceField(
        choices=McpTransport.choices, widget=forms.RadioSelect, initial=McpTransport.HTTP
    )
    url = forms.URLField(
        max_length=500,
        assume_scheme="https",
        required=False,
        label="URL (streamable HTTP)",
        help_text="e.g. https://mcp.example.com/mcp",
    )
    command = forms.CharField(
        max_length=500,
        required=False,
        label="Command (stdio)",
        help_text="The program that starts the server, e.g. npx or /usr/bin/python3.",
    )
    args = ListTextField(
        separator="\n",
        item_max_length=1000,
        required=False,
        label="Arguments (stdio)",
        help_text="One argument per line.",
    )
    secret_headers = write_only_json(
        'HTTP only, write-only: {"X-Api-Key": "…"}. Blank keeps the stored ones; {} removes them.'
    )
    secret_env = write_only_json(
        'stdio only, write-only environment: {"API_TOKEN": "…"}. Blank keeps the stored one; '
        "{} removes it."
    )
    timeout_seconds = forms.IntegerField(min_value=1, max_value=900, initial=30)
    tags = tags_field()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.creating:
            self.fields[
                "secret_headers"
            ].help_text = 'HTTP only, write-only: {"X-Api-Key": "…"}; shown later by name only.'
            self.fields[
                "secret_env"
            ].help_text = (
                'stdio only, write-only environment: {"API_TOKEN": "…"}; shown later by name only.'
            )

    def clean(self):
        data = super().clean()
        for key in ("secret_headers", "secret_env"):
            value = data.get(key)
            if value and not all(isinstance(v, str) and v for v in value.values()):
                self.add_error(key, "Give each name a non-empty string value.")
        return data
