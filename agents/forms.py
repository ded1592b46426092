"""Dashboard forms of the registry. They parse and check what a person typed; services write.

JSON settings (an agent's configuration, schemas, model prices) are edited as text and
parsed here; what only a service can judge (a config against its kind's schema, a slug
already taken) comes back as a ``ValidationError`` that ``add_service_errors`` puts next
to the field it names, keeping paths such as ``config.temperature``. Secret values are
write-only: their widgets never render a value, not even the one just typed.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django import forms
from django.core.exceptions import ValidationError

from agents.choices import AgentKind, McpTransport, ProviderKind, Risk, ToolKind
from agents.models import Agent, ProviderConnection, Tool, ToolGrant
from controlplane.choices import Status
from controlplane.dashboard.forms import (
    SLUG_HELP,
    DashboardForm,
    JSONTextField,
    ListTextField,
    slug_field,
    tags_field,
    write_only_json,
)

HTTP_METHODS = [(m, m) for m in ("GET", "POST", "PUT", "PATCH", "DELETE")]


# agents ------------------------------------------------------------------------------------


def config_example(kind: str, tenant: Any) -> dict[str, Any]:
    """A working starting point for an agent of ``kind`` (uses one of the tenant's providers)."""
    if kind == AgentKind.HTTP:
        return {"url": "https://agents.example.com/webhook", "timeout_seconds": 30}
    if kind == AgentKind.ROUTER:
        return {
            "mode": "rules",
            "rules": [
                {
                    "when": {"path": "input.category", "op": "eq", "value": "billing"},
                    "route": "billing",
                }
            ],
            "default_route": "general",
        }
    if kind == AgentKind.HUMAN:
        return {
            "instructions": "Read the draft answer and approve it or correct it.",
            "response_schema": {
                "type": "object",
                "properties": {"approved": {"type": "boolean"}, "comment": {"type": "string"}},
                "required": ["approved"],
            },
            "assignee_role": "operator",
        }
    providers = ProviderConnection.objects.for_tenant(tenant).filter(status=Status.ACTIVE)
    provider = (
        providers.filter(kind=ProviderKind.SIMULATED).first() or providers.order_by("slug").first()
    )
    models = provider.model_names if provider else []
    return {
        "provider": provider.slug if provider else "my-provider",
        "model": models[0] if models else "sim-1",
        "system_prompt": "You are a helpful support agent. Answer briefly.",
        "temperature": 0.2,
        "max_tokens": 1024,
        "max_iterations": 8,
        "builtin_tools": [],  # "context", "memory": engine tools, none unless listed
    }


CONFIG_HELP = (
    "JSON. Problems are listed below by path, e.g. config.temperature. "
    "Use one of the examples above as a starting point."
)


class AgentCreateForm(DashboardForm):
    kind = forms.ChoiceField(choices=AgentKind.choices, initial=AgentKind.LLM)
    slug = slug_field()
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    tags = tags_field()
    config = JSONTextField(expect=dict, rows=14, label="Configuration", help_text=CONFIG_HELP)
    note = forms.CharField(
        max_length=300, required=False, help_text="What the first version is, e.g. “first draft”."
    )


class AgentEditForm(DashboardForm):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    tags = tags_field()


class AgentPublishForm(DashboardForm):
    config = JSONTextField(
        expect=dict,
        rows=14,
        label="Configuration",
        help_text="The new version's configuration (JSON). Today's tool grants are pinned too.",
    )
    note = forms.CharField(
        max_length=300, required=False, help_text="What changed, e.g. “cooler temperature”."
    )


class AgentRollbackForm(DashboardForm):
    version = forms.IntegerField(min_value=1)


class VersionDiffForm(forms.Form):
    """``?from=1&to=3``: the two versions to compare (the API's parameters)."""

    def __init__(self, *args, numbers: list[int], **kwargs):
        super().__init__(*args, **kwargs)
        choices = [(n, f"v{n}") for n in numbers]
        for key, label in (("from", "From version"), ("to", "To version")):
            self.fields[key] = forms.TypedChoiceField(coerce=int, choices=choices, label=label)


class AgentToolGrantForm(DashboardForm):
    """Grant one of the tenant's active tools to this agent."""

    tool = forms.ModelChoiceField(queryset=Tool.objects.none(), to_field_name="slug")

    def __init__(self, *args, tenant: Any, agent: Agent, **kwargs):
        super().__init__(*args, **kwargs)
        granted = ToolGrant.objects.for_tenant(tenant).filter(agent=agent).values("tool_id")
        self.fields["tool"].queryset = (
            Tool.objects.for_tenant(tenant)
            .filter(status=Status.ACTIVE)
            .exclude(pk__in=granted)
            .order_by("slug")
        )
        self.fields["tool"].label_from_instance = lambda t: f"{t.slug} · {t.name} ({t.risk})"
        self.fields["tool"].empty_label = "Choose a tool"


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


# tools -------------------------------------------------------------------------------------


def builtin_choices() -> list[tuple[str, str]]:
    from agents.tools.builtin import BUILTINS

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


class ToolForm(DashboardForm):
    """A built-in or HTTP tool (create and edit); an MCP tool's name, risk and limits (edit)."""

    COMMON: ClassVar[tuple[str, ...]] = (
        "slug",
        "name",
        "description",
        "risk",
        "timeout_seconds",
        "tags",
    )

    slug = slug_field()
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
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

    def __init__(self, *args, kind: str, creating: bool, **kwargs):
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
        if creating:
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


# providers ---------------------------------------------------------------------------------


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


# MCP servers -------------------------------------------------------------------------------


class McpServerForm(DashboardForm):
    slug = slug_field(help_text=SLUG_HELP + " Its tools are named <slug>-<tool>.")
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
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

    def __init__(self, *args, creating: bool, **kwargs):
        super().__init__(*args, **kwargs)
        if creating:
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


# secrets and knowledge ---------------------------------------------------------------------


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


class KnowledgeDocumentForm(DashboardForm):
    collection = slug_field(
        initial="default", help_text="Groups documents; kb_search can search one collection."
    )
    title = forms.CharField(max_length=300)
    content = forms.CharField(widget=forms.Textarea(attrs={"rows": 12}))
    tags = tags_field()
