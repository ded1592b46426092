"""The registry as validation sees it (a pure lookup the Django side fills in) and the
checks of agents and tools a step names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from runs.engine.validation.report import Errors, items_at

ACTIVE = "active"


@dataclass(frozen=True)
class AgentInfo:
    """What validation needs of an agent. ``routes``: route names a router agent can answer
    (``None`` when unknown, e.g. an LLM classifier with open routes)."""

    kind: str
    status: str
    tools: frozenset[str] = frozenset()
    routes: frozenset[str] | None = None


@dataclass(frozen=True)
class ToolInfo:
    """What validation needs of a tool."""

    status: str
    risk: str


@dataclass(frozen=True)
class RegistryView:
    """The tenant's agents and tools by slug, as seen by validation."""

    agents: Mapping[str, AgentInfo]
    tools: Mapping[str, ToolInfo]


_Info = TypeVar("_Info", AgentInfo, ToolInfo)


# --- registry ---------------------------------------------------------------------------------


def check_agent(
    slug: Any,
    path: str,
    registry: RegistryView,
    out: Errors,
    kind: str | None = None,
    role: str = "",
) -> AgentInfo | None:
    """The agent ``slug`` names (None when it names none), reporting unknown, inactive or of
    another ``kind`` than asked (``role`` names the field in the message)."""
    agent = _active(slug, "agent", registry.agents, path, out)
    if agent is not None and kind is not None and agent.kind != kind:
        out.add(
            path,
            f"Agent {slug!r} is {with_article(agent.kind)} agent; "
            f"{role} must be {with_article(kind)} agent.",
        )
    return agent


def with_article(word: str) -> str:
    vowel_sound = word[:1] in "aeiou" or word in ("llm", "http")
    return f"{'an' if vowel_sound else 'a'} {word}"


def check_tool(slug: Any, path: str, registry: RegistryView, out: Errors) -> ToolInfo | None:
    """The tool ``slug`` names (None when it names none), reporting unknown or inactive."""
    return _active(slug, "tool", registry.tools, path, out)


def _active(
    slug: Any, what: str, known: Mapping[str, _Info], path: str, out: Errors
) -> _Info | None:
    """The ``what`` (agent or tool) ``slug`` names; reports it at ``path`` when it is unknown
    or not active. None for an unknown slug or one that is not a string (the schema says so)."""
    if not isinstance(slug, str):
        return None
    found = known.get(slug)
    if found is None:
        out.add(path, f"Unknown {what} {slug!r}.")
        return None
    if found.status != ACTIVE:
        out.add(path, f"{what.capitalize()} {slug!r} is {found.status}.")
    return found


def check_tools(
    holder: Mapping[str, Any],
    base: str,
    agent_slug: Any,
    agent: AgentInfo | None,
    registry: RegistryView,
    out: Errors,
) -> None:
    for path, slug in items_at(holder.get("tools"), f"{base}.tools"):
        known = check_tool(slug, path, registry, out) is not None
        if known and agent is not None and slug not in agent.tools:
            out.add(path, f"Agent {agent_slug!r} may not use tool {slug!r}: it is not granted.")


def agent_with_tools(
    holder: Mapping[str, Any],
    base: str,
    registry: RegistryView,
    out: Errors,
    kind: str | None = None,
    role: str = "",
) -> None:
    slug = holder.get("agent")
    agent = check_agent(slug, f"{base}.agent", registry, out, kind, role)
    check_tools(holder, base, slug, agent, registry, out)
