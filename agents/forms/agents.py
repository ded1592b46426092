"""Forms of the agent pages: register, edit, publish, roll back, grant a tool; config examples."""

from __future__ import annotations

from typing import Any

from django import forms

from agents.choices import AgentKind, ProviderKind
from agents.models import Agent, ProviderConnection, Tool, ToolGrant
from controlplane.choices import Status
from controlplane.dashboard.forms import (
    DashboardForm,
    JSONTextField,
    NamedForm,
    note_field,
    tags_field,
)


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


class AgentCreateForm(NamedForm):
    field_order = ["kind"]

    kind = forms.ChoiceField(choices=AgentKind.choices, initial=AgentKind.LLM)
    tags = tags_field()
    config = JSONTextField(expect=dict, rows=14, label="Configuration", help_text=CONFIG_HELP)
    note = note_field()


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
    note = note_field("What changed, e.g. “cooler temperature”.")


class AgentRollbackForm(DashboardForm):
    version = forms.IntegerField(min_value=1)


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
