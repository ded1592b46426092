"""The dashboard page of an agent's long-term memory: read it, forget a key, clear it.

Served by ``runs`` (the memory rows live with the runs) at the agent's URL plus
``memory/``; the agent's page links here by URL name. Same permissions as the agent's
page: viewing the agent to read, changing it to forget.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect

from agents.models import Agent
from controlplane.dashboard.pages import OperationsMixin, TenantObjectPage, operation, pretty
from runs.memory import agent_memory, agent_memory_clear

MEMORY_SHOWN = 100  # memory keys listed on the page; the API pages through the rest


class AgentMemoryPage(OperationsMixin, TenantObjectPage):
    template_name = "runs/agent_memory.html"
    permission_required = "agents.view_agent"
    post_permission_required = "agents.change_agent"
    nav_section = "agents"
    model = Agent
    object_grants = True

    def get_queryset(self):
        return Agent.objects.select_related("current_version")

    def get_context_data(self, **kwargs):
        """What the agent remembers across runs (its memory_set tool) and its engine tools."""
        data = super().get_context_data(**kwargs)
        agent = self.object
        current = agent.current_version
        entries = agent_memory(agent)
        data.update(
            agent=agent,
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
            messages.success(self.request, f"{agent.slug} no longer remembers “{key}”.")
        else:
            messages.error(self.request, f"{agent.slug} remembers nothing under “{key}”.")
        return redirect(f"{self.request.path}#memory")

    @operation("memory_clear")
    def memory_clear(self, agent: Agent) -> HttpResponse:
        removed = agent_memory_clear(agent=agent)
        messages.success(
            self.request, f"{agent.slug}'s memory cleared ({len(removed)} keys forgotten)."
        )
        return redirect(f"{self.request.path}#memory")
