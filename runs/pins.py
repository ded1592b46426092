"""Agent versions pinned per run: which agents a definition names and which version each runs.

A run pins, when it starts, the current version of every agent its definition names
(``Run.agent_versions``: ``{slug: AgentVersion id}``), so publishing or rolling back an
agent while the run goes does not change what its later steps run. Resume keeps the pins;
a rerun keeps them ("same") or pins the versions current at the rerun ("current").
"""

from __future__ import annotations

from typing import Any

from agents.models import Agent, AgentVersion

VERSION_CHOICES = ("same", "current")


def agent_slugs(definition: dict[str, Any]) -> list[str]:
    """Every agent slug the definition names, in order of first mention: step agents,
    fallbacks (``on_error``), router agents, parallel branches and merge agents, manager
    supervisors and delegates, handoff agents."""
    found: list[str] = []

    def add(value: Any) -> None:
        if isinstance(value, str) and value and value not in found:
            found.append(value)

    for step in definition.get("steps") or []:
        if not isinstance(step, dict):
            continue
        add(step.get("agent"))
        for slug in step.get("delegates") or []:
            add(slug)
        for slug in step.get("agents") or []:
            add(slug)
        for branch in step.get("branches") or []:
            if isinstance(branch, dict):
                add(branch.get("agent"))
        merge = step.get("merge")
        if isinstance(merge, dict):
            add(merge.get("agent"))
        on_error = step.get("on_error")
        if isinstance(on_error, dict):
            add(on_error.get("fallback"))
    return found


def pin_agent_versions(
    *, tenant: Any, definition: dict[str, Any], keep: dict[str, int] | None = None
) -> dict[str, int]:
    """``{slug: version id}`` for every agent of ``definition``: the pins in ``keep`` where
    it has one, else the agent's current version (agents without one are left out)."""
    keep = keep or {}
    slugs = agent_slugs(definition)
    missing = [slug for slug in slugs if slug not in keep]
    current = dict(
        Agent.objects.for_tenant(tenant)
        .filter(slug__in=missing, current_version__isnull=False)
        .values_list("slug", "current_version_id")
    )
    pins = {slug: keep.get(slug, current.get(slug)) for slug in slugs}
    return {slug: pk for slug, pk in pins.items() if pk is not None}


def pinned_versions(run: Any) -> list[dict[str, Any]]:
    """The run's pins for display: slug, version number and whether it is still current."""
    pins = run.agent_versions or {}
    if not pins:
        return []
    versions = {
        v.pk: v
        for v in AgentVersion.objects.for_tenant(run.tenant_id)
        .filter(pk__in=list(pins.values()))
        .select_related("agent")
    }
    rows = []
    for slug, pk in pins.items():
        version = versions.get(pk)
        rows.append(
            {
                "slug": slug,
                "number": version.number if version else None,
                "current": version is not None and version.agent.current_version_id == version.pk,
                "agent": version.agent if version else None,
            }
        )
    return rows
