"""Forms of the tool pages: register or edit a tool, grant it to an agent or a tag."""

from __future__ import annotations

from typing import Any, ClassVar

from django import forms
from django.core.exceptions import ValidationError

from agents.choices import Risk, ToolKind
from agents.models import Agent
from agents.tools.builtin import BUILTINS
from controlplane.dashboard.forms import (
    CreateOrEditForm,
    DashboardForm,
    JSONTextField,
    ListTextField,
    tags_field,
    write_only_json,
)

HTTP_METHODS = [(m, m) for m in ("GET", "POST", "PUT", "PATCH", "DELETE")]


class ToolGrantForm(DashboardForm):
    """On a tool's page: grant it to one agent, or to every agent carrying a tag."""

    agent = forms.ModelChoiceField(
        queryset=Agent.objects.none(), to_field_name="slug", required=False
    )
    agent_tag = forms.CharField(
        max_length=50,
        required=False,
        label="or every agent tagged",
        help_text="Fill in one of the two.",
    )

    def __init__(self, *args, tenant: Any, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["agent"].queryset = Agent.objects.for_tenant(tenant).order_by("slug")
        self.fields["agent"].label_from_instance = lambda a: f"{a.slug} · {a.name}"
        self.fields["agent"].empty_label = "Choose an agent"

    def clean(self):
        data = super().clean()
        if bool(data.get("agent")) == bool(data.get("agent_tag")):
            raise ValidationError("Choose an agent or type a tag, not both and not neither.")
        return data


def builtin_choices() -> list[tuple[str, str]]:
    return [(name, f"{name} — {spec.description}") for name, spec in sorted(BUILTINS.items())]


SCHEMA_HELP = "JSON Schema of an object. Leave blank for a built-in's own schema."
TOOL_FIELDS_BY_KIND: dict[str, tuple[str, ...]] = {
    ToolKind.BUILTIN: (
        "builtin",
        "allowed_hosts",
        "headers",
        "secret_headers",
        "input_schema",
        "output_schema",
    ),
    ToolKind.HTTP: (
        "url",
        "method",
        "allowed_hosts",
        "headers",
        "secret_headers",
        "input_schema",
        "output_schema",
    ),
    ToolKind.MCP: (),
}


class ToolForm(CreateOrEditForm):
    """A built-in or HTTP tool (create and edit); an MCP tool's name, risk and limits (edit)."""

    COMMON: ClassVar[tuple[str, ...]] = (
        "slug",
        "name",
        "description",
        "risk",
        "timeout_seconds",
        "tags",
    )

    builtin = forms.ChoiceField(label="Built-in function")
    url = forms.CharField(
        max_length=1000,
        label="URL",
        help_text="May hold {argument} placeholders, e.g. https://api.example.com/orders/{id}.",
    )
    method = forms.ChoiceField(choices=HTTP_METHODS, initial="GET")
    allowed_hosts = ListTextField(
        separator="\n",
        item_max_length=255,
        required=False,
        help_text="One host per line; calls to any other host are refused.",
    )
    headers = JSONTextField(
        expect=dict,
        required=False,
        blank_value={},
        rows=3,
        help_text='Plain headers, e.g. {"Accept": "application/json"}; '
        "${secret:name} inserts a secret.",
    )
    secret_headers = write_only_json(
        'Write-only, e.g. {"Authorization": "Bearer …"}. Leave blank to keep the stored '
        "ones; {} removes them."
    )
    input_schema = JSONTextField(expect=dict, required=False, blank_value={}, help_text=SCHEMA_HELP)
    output_schema = JSONTextField(
        expect=dict, required=False, blank_value={}, help_text=SCHEMA_HELP
    )
    risk = forms.ChoiceField(
        choices=Risk.choices, help_text="What a call can do to the world; policies match on it."
    )
    timeout_seconds = forms.IntegerField(min_value=1, max_value=900, initial=30)
    tags = tags_field()

    def __init__(self, *args, kind: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.kind = kind
        keep = set(self.COMMON) | set(TOOL_FIELDS_BY_KIND[kind])
        for name in list(self.fields):
            if name not in keep:
                del self.fields[name]
        if "builtin" in self.fields:
            self.fields["builtin"].choices = builtin_choices()
        if kind == ToolKind.HTTP:
            for name in ("input_schema", "output_schema"):
                self.fields[name].help_text = "JSON Schema of an object. Blank accepts any object."
        if self.creating:
            self.fields[
                "secret_headers"
            ].help_text = (
                'Write-only, e.g. {"Authorization": "Bearer …"}; shown later by name only.'
            )
            if kind == ToolKind.BUILTIN:
                self.fields["risk"].choices = [("", "The built-in's default"), *Risk.choices]
                self.fields["risk"].required = False

    def service_fields(self) -> dict[str, Any]:
        """The cleaned data as the services take it (blank risk and schemas mean defaults)."""
        data = dict(self.cleaned_data)
        if not data.get("risk"):
            data.pop("risk", None)
        return data
