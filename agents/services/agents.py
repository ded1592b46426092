"""Agent writes: register, edit, publish a version, roll back. Versions are immutable."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from agents.models import Agent, AgentVersion
from agents.services.tools import granted_tools
from agents.validation import validate_agent_config
from controlplane.entities import Entity, add_version, all_problems, unique_slug

AGENTS = Entity(
    Agent,
    "agent",
    fields=("slug", "name", "description", "kind", "tags", "status"),
    clean_exclude=("current_version",),
)
# the rest (kind, configuration, tools) changes by publishing a version
AGENT_EDITABLE = ("name", "description", "tags", "status", "slug")


def _check_config(kind: str, config: Any) -> None:
    errors = validate_agent_config(kind=kind, config=config)
    if errors:
        raise ValidationError(errors)


def _new_version(
    *,
    agent: Agent,
    config: dict,
    note: str,
    created_by: Any,
    rolled_back_from: int | None = None,
    tools: list[dict] | None = None,
) -> AgentVersion:
    if tools is None:
        tools = [{"id": t.pk, "slug": t.slug} for t in granted_tools(agent)]
    return add_version(
        AgentVersion,
        owner_field="agent",
        owner=agent,
        current_field="current_version",
        config=config,
        tools=tools,
        note=note,
        created_by=created_by,
        rolled_back_from=rolled_back_from,
    )


@transaction.atomic
def agent_create(
    *,
    tenant: Any,
    slug: str,
    name: str,
    kind: str,
    config: dict,
    description: str = "",
    tags: list[str] | None = None,
    note: str = "",
    created_by: Any = None,
) -> Agent:
    """Register an agent and publish its first version (v1).

    Every problem (slug taken, fields, configuration, unknown provider) is reported in one
    ValidationError, so a form shows them all at once.
    """
    agent = Agent(
        tenant=tenant, slug=slug, name=name, kind=kind, description=description, tags=tags or []
    )
    all_problems(
        lambda: unique_slug(Agent, tenant, slug),
        lambda: AGENTS.clean(agent),
        lambda: _check_config(kind, config),
    )
    agent.save()
    version = _new_version(
        agent=agent, config=config, note=note or "first version", created_by=created_by
    )
    AGENTS.record(
        "create",
        agent,
        after=AGENTS.snapshot(agent, version=version.number, config=config, tools=version.tools),
    )
    return agent


def _only_metadata(agent: Agent, changes: dict[str, Any]) -> None:
    for field in changes:
        if field not in AGENT_EDITABLE:
            raise ValidationError({field: "Publish a new version to change this."})


@transaction.atomic
def agent_update(*, agent: Agent, **changes: Any) -> Agent:
    """Edit an agent's metadata (name, description, tags, status); config changes publish."""
    return AGENTS.update(agent, changes, prepare=_only_metadata)


@transaction.atomic
def agent_publish(
    *, agent: Agent, config: dict, note: str = "", created_by: Any = None
) -> AgentVersion:
    """Publish a new immutable version and make it current; pins today's tool grants."""
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    _check_config(agent.kind, config)
    previous = agent.current_version
    version = _new_version(agent=agent, config=config, note=note, created_by=created_by)
    AGENTS.record(
        "publish",
        agent,
        before={
            "version": previous.number if previous else None,
            "config": previous.config if previous else None,
            "tools": previous.tools if previous else None,
        },
        after={"version": version.number, "config": config, "tools": version.tools},
        metadata={"note": note},
    )
    return version


@transaction.atomic
def agent_rollback(*, agent: Agent, number: int, created_by: Any = None) -> AgentVersion:
    """Make version ``number`` current again, as a new version copying its config and tools."""
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    target = AgentVersion.objects.filter(agent=agent, number=number).first()
    if target is None:
        raise ValidationError({"version": f"{agent.slug} has no version {number}."})
    previous = agent.current_version
    version = _new_version(
        agent=agent,
        config=target.config,
        tools=target.tools,
        note=f"rollback to v{number}",
        created_by=created_by,
        rolled_back_from=number,
    )
    AGENTS.record(
        "rollback",
        agent,
        before={"version": previous.number if previous else None},
        after={"version": version.number, "copied_from": number},
    )
    return version
