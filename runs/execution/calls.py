"""The contract between the step runner and agent execution (LLM loop, manager, handoff).

The runner builds an ``AgentCall`` for each agent invocation inside a step; executors
return an ``AgentResult``. ``emit`` writes a RunEvent (committed at once, published
live); ``policy`` asks the decision point and records the decision; ``next_call_index``
numbers tool calls within the step so idempotency keys are the same on every attempt.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from agents.models import Agent, AgentVersion
from policies.choices import Effect
from policies.decision import Decision, PolicyRequest
from runs.execution.outcomes import StepFailure


@dataclasses.dataclass
class ExtraTool:
    """An engine-provided tool offered to an LLM agent next to its registry tools.

    ``handler(arguments) -> dict`` runs it; ``kind`` is "delegate", "handoff" or "builtin"
    (run context / memory access, granted by the version's ``builtin_tools``; its calls are
    policy-checked as ``call_tool`` with ``risk``). A handoff handler's result ends the
    agent's turn.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    handler: Callable[[dict[str, Any]], dict[str, Any]]
    kind: str = "builtin"
    target: str | None = None  # agent slug for delegate / handoff
    risk: str | None = None  # builtin: what a policy sees (read for get, write for set)


@dataclasses.dataclass
class AgentCall:
    """One invocation of an agent inside a step."""

    tenant: Any
    run_id: int
    step_key: str
    agent: Agent
    version: AgentVersion
    input: Any
    run_input: Any
    run_context: dict[str, Any]
    memory: dict[str, Any]
    emit: Callable[[str, dict[str, Any]], None]
    policy: Callable[[PolicyRequest], Decision]
    next_call_index: Callable[[], int]
    check_cancel: Callable[[], None]
    deadline: float | None = None  # time.monotonic() value
    extra_tools: list[ExtraTool] = dataclasses.field(default_factory=list)
    messages: list[Any] | None = None  # prior conversation (handoff)
    allowed_tools: frozenset[str] | None = None  # a step's ``tools`` narrowing the grants
    budget: Any = None  # runs.execution.policy_guard.StepPolicy: reserves spend around model calls

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def idempotency_key(self, index: int) -> str:
        return f"run-{self.run_id}-step-{self.step_key}-call-{index}"


@dataclasses.dataclass
class AgentResult:
    """What an agent produced, with usage for cost accounting."""

    output: Any
    messages: list[Any] = dataclasses.field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    route: str | None = None
    handoff_to: str | None = None
    context_updates: dict[str, Any] = dataclasses.field(default_factory=dict)


def authorize_invocation(call: AgentCall) -> Decision:
    """Ask the decision point whether ``call.agent`` may run (action ``invoke_agent``).

    The one policy check of an agent invocation, for every kind (llm, http, router, human):
    ``runs.execution.executors.agents.invoke`` calls it before it dispatches on the kind, and
    every step type runs its agents through ``invoke`` (manager supervisors, delegates and
    handoff agents included). The decision is recorded by ``call.policy`` (a
    ``policy.decision`` event); a refusal raises ``StepFailure(code="policy_denied")``.
    """
    agent = call.agent
    request = PolicyRequest(
        tenant_id=call.tenant.pk,
        action="invoke_agent",
        agent=agent.slug,
        agent_tags=tuple(agent.tags or ()),
        run_id=call.run_id,
        run_input=call.run_input,
    )
    decision = call.policy(request)
    if decision.allowed:
        return decision
    verb = "requires an approval for" if decision.effect == Effect.REQUIRE_APPROVAL else "denied"
    raise StepFailure(
        f"A policy {verb} invoking agent '{agent.slug}': {decision.reason}",
        code="policy_denied",
        details={"effect": decision.effect, "rule": decision.rule, "action": request.action},
    )
