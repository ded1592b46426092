"""Reads shared by the policies pages and the API."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery

from agents.choices import BUILTIN_TOOL_RISKS
from agents.models import Agent, AgentVersion, ProviderConnection, Tool
from policies.definition import KnownNames
from policies.models import PolicyVersion


def with_version_counts(queryset: QuerySet) -> QuerySet:
    """Policies with ``versions_count`` and ``latest_version`` (the newest number) annotated,
    and their applied version loaded."""
    # correlated to the outer (tenant-scoped) policy row, so it needs no tenant of its own
    versions = PolicyVersion.objects.unscoped().filter(policy=OuterRef("pk")).order_by()
    count = versions.values("policy").annotate(n=Count("pk")).values("n")
    latest = versions.order_by("-number").values("number")[:1]
    return queryset.select_related("active_version").annotate(
        versions_count=Subquery(count, output_field=IntegerField()),
        latest_version=Subquery(latest, output_field=IntegerField()),
    )


def known_names(tenant: Any) -> KnownNames:
    """The agent and tool slugs and model names a policy of ``tenant`` may name, whatever
    their status (a disabled tool may be enabled again): tools include the engine's
    context_get/context_set/memory_get/memory_set; models from the providers' model lists
    and from every agent version's configuration."""
    models: set[str] = set()
    for listed in ProviderConnection.objects.for_tenant(tenant).values_list("models", flat=True):
        models.update(m["name"] for m in listed or () if isinstance(m, dict) and m.get("name"))
    configured = AgentVersion.objects.for_tenant(tenant).values_list("config__model", flat=True)
    models.update(m for m in configured.distinct() if isinstance(m, str) and m)
    return KnownNames(
        agents=frozenset(Agent.objects.for_tenant(tenant).values_list("slug", flat=True)),
        tools=frozenset(Tool.objects.for_tenant(tenant).values_list("slug", flat=True))
        | frozenset(BUILTIN_TOOL_RISKS),  # the engine's context and memory tools
        models=frozenset(models),
    )
