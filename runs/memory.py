"""An agent's long-term memory (``AgentMemory``): read it, forget a key, clear it.

Agents write their memory with the ``memory_set`` engine tool (granted by
``"builtin_tools": ["memory"]``); people read and clear it through the API
(``/api/v1/t/<tenant>/agents/<slug>/memory/``) and the agent's dashboard page.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from controlplane.audit.services import audit_record
from runs.models import AgentMemory


def agent_memory(agent: Any) -> QuerySet[AgentMemory]:
    """The agent's memory entries, by key."""
    return AgentMemory.objects.for_tenant(agent.tenant_id).filter(agent=agent).order_by("key")


@transaction.atomic
def agent_memory_clear(*, agent: Any, key: str | None = None) -> list[str]:
    """Forget ``key`` (or every key) of the agent's memory; the keys removed, audited as
    ``agent.memory.forget`` / ``agent.memory.clear`` in the same transaction. Forgetting a
    key that is not there removes nothing and records nothing."""
    entries = agent_memory(agent).select_for_update()
    if key is not None:
        entries = entries.filter(key=key)
    removed = sorted(entries.values_list("key", flat=True))
    if key is not None and not removed:
        return []
    entries.delete()
    audit_record(  # keys only: what was forgotten stays forgotten, the trail included
        action="agent.memory.forget" if key is not None else "agent.memory.clear",
        target=agent,
        tenant=agent.tenant,
        before={"keys": removed},
        after={"keys": []},
    )
    return removed
