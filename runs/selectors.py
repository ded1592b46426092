"""Reads shared by the runs API, the dashboard and the services."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from agents.choices import AgentKind
from agents.models import Agent, Tool
from runs.choices import StepStatus
from runs.engine.validation.registry import AgentInfo, RegistryView, ToolInfo
from runs.models import Run, StepRun

FINISHED_STEP_STATUSES = (StepStatus.SUCCEEDED, StepStatus.SKIPPED, StepStatus.FAILED)


def registry_view(tenant: Any) -> RegistryView:
    """What workflow validation needs to know of the tenant's agents and tools."""
    agents = {}
    for agent in Agent.objects.for_tenant(tenant).select_related("current_version"):
        config = agent.current_version.config if agent.current_version else {}
        routes = None
        if agent.kind == AgentKind.ROUTER:
            if config.get("mode") == "classifier":
                routes = frozenset(r["name"] for r in config.get("routes", []))
            else:
                routes = frozenset(
                    [r["route"] for r in config.get("rules", [])]
                    + ([config["default_route"]] if config.get("default_route") else [])
                )
        tools = frozenset(
            t["slug"] for t in (agent.current_version.tools if agent.current_version else [])
        )
        agents[agent.slug] = AgentInfo(
            kind=agent.kind, status=agent.status, tools=tools, routes=routes
        )
    tools = {
        tool.slug: ToolInfo(status=tool.status, risk=tool.risk)
        for tool in Tool.objects.for_tenant(tenant).only("slug", "status", "risk")
    }
    return RegistryView(agents=agents, tools=tools)


def with_finished_steps(queryset: QuerySet[Run]) -> QuerySet[Run]:
    """Runs annotated with ``finished_steps`` (succeeded, skipped or failed), in one query."""
    finished = (
        StepRun.objects.unscoped()
        .filter(run=OuterRef("pk"), status__in=FINISHED_STEP_STATUSES)
        .order_by()
        .values("run")
        .annotate(n=Count("*"))
        .values("n")
    )
    return queryset.annotate(finished_steps=Coalesce(Subquery(finished), 0))
