"""Agent writes: register, edit, publish a version, roll back. Versions are immutable."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from agents.models import Agent, AgentVersion
from agents.services.common import all_problems, full_clean, unique_slug
from agents.services.tools import granted_tools
from agents.validation import validate_agent_config
from controlplane.audit.services import audit_record, snapshot

AGENT_FIELDS = ["slug", "name", "description", "kind", "tags", "status"]


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
    last = AgentVersion.objects.filter(agent=agent).aggregate(n=Max("number"))["n"] or 0
    if tools is None:
        tools = [{"id": t.pk, "slug": t.slug} for t in granted_tools(agent)]
    version = AgentVersion.objects.create(
        tenant=agent.tenant,
        agent=agent,
        number=last + 1,
        config=config,
        tools=tools,
        note=note,
        created_by=created_by,
        rolled_back_from=rolled_back_from,
    )
    Agent.objects.filter(pk=agent.pk).update(current_version=version, updated_at=timezone.now())
    agent.current_version = version
    return version


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
        lambda: full_clean(agent, exclude=["current_version"]),
        lambda: _check_config(kind, config),
    )
    agent.save()
    version = _new_version(
        agent=agent, config=config, note=note or "first version", created_by=created_by
    )
    audit_record(
        action="agent.create",
        target=agent,
        tenant=tenant,
        after={
            **snapshot(agent, AGENT_FIELDS),
            "version": version.number,
            "config": config,
            "tools": version.tools,
        },
    )
    return agent


@transaction.atomic
def agent_update(*, agent: Agent, **changes: Any) -> Agent:
    """Edit an agent's metadata (name, description, tags, status); config changes publish."""
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    before = snapshot(agent, AGENT_FIELDS)
    for field, value in changes.items():
        if field not in ("name", "description", "tags", "status", "slug"):
            raise ValidationError({field: "Publish a new version to change this."})
        if field == "slug" and value != agent.slug:
            unique_slug(Agent, agent.tenant, value, exclude_pk=agent.pk)
        setattr(agent, field, value)
    full_clean(agent, exclude=["current_version"])
    agent.save()
    audit_record(
        action="agent.update",
        target=agent,
        tenant=agent.tenant,
        before=before,
        after=snapshot(agent, AGENT_FIELDS),
    )
    return agent


@transaction.atomic
def agent_publish(
    *, agent: Agent, config: dict, note: str = "", created_by: Any = None
) -> AgentVersion:
    """Publish a new immutable version and make it current; pins today's tool grants."""
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    _check_config(agent.kind, config)
    previous = agent.current_version
    version = _new_version(agent=agent, config=config, note=note, created_by=created_by)
    audit_record(
        action="agent.publish",
        target=agent,
        tenant=agent.tenant,
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
    audit_record(
        action="agent.rollback",
        target=agent,
        tenant=agent.tenant,
        before={"version": previous.number if previous else None},
        after={"version": version.number, "copied_from": number},
    )
    return version
