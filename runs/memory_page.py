"""The dashboard page of an agent's long-term memory: read it, forget a key, clear it.

Served by ``runs`` (the memory rows live with the runs) at the agent's URL plus
``memory/``; the agent's page links here by URL name. Same permissions as the agent's
page: viewing the agent to read, changing it to forget.
"""

from __future__ import annotations

from django.http import HttpResponse

from agents.models import Agent
from agents.views.agents import AGENT_PAGES
from controlplane.dashboard.entity_pages import EntityObjectPage
from controlplane.dashboard.pages import OperationsMixin, operation, pretty
from runs.memory import agent_memory, agent_memory_clear

MEMORY_SHOWN = 100  # memory keys listed on the page; the API pages through the rest


class AgentMemoryPage(OperationsMixin, EntityObjectPage):
    entity = AGENT_PAGES
    route = "memory"
    template_name = "runs/agent_memory.html"
    context_object_name = "agent"

    def get_context_data(self, **kwargs):
        """What the agent remembers across runs (its memory_set tool) and its engine tools."""
        data = super().get_context_data(**kwargs)
        agent = self.object
        current = agent.current_version
        entries = agent_memory(agent)
        data.update(
            builtin_tools=(current.config.get("builtin_tools") or []) if current else [],
            memory_entries=[(e.key, pretty(e.value)) for e in entries[:MEMORY_SHOWN]],
            memory_count=entries.count(),
            memory_shown=MEMORY_SHOWN,
        )
        return data

    @operation("memory_forget")
    def memory_forget(self, agent: Agent) -> HttpResponse:
        key = self.request.POST.get("key", "")
        if agent_memory_clear(agent=agent, key=key):
            return self.done(f"{agent.slug} no longer remembers “{key}”.", "memory")
        return self.refuse(f"{agent.slug} remembers nothing under “{key}”.", "memory")

    @operation("memory_clear")
    def memory_clear(self, agent: Agent) -> HttpResponse:
        removed = agent_memory_clear(agent=agent)
        return self.done(
            f"{agent.slug}'s memory cleared ({len(removed)} keys forgotten).", "memory"
        )
