"""Multi-agent steps built on the LLM loop: a manager delegating to agents, and handoffs.

``run_manager``: a supervisor llm agent sees each delegate as a tool
(``delegate_to_<slug>``) and calls them like any other tool; the runner's ``invoke``
runs the delegate (whatever its kind) and its output becomes the tool result.

Every agent of these steps (supervisor, delegates, each agent of a handoff chain) runs
through the ``invoke`` callable the runner passes in, which asks the policy decision point
(``invoke_agent``) before anything runs: no agent here starts without that check.

``run_handoff``: the active agent sees a ``handoff_to_<slug>`` tool for every other agent
of the step; calling one passes control and the conversation so far to that agent, which
continues under its own system prompt. The last agent's answer is the step's output.

Both return one ``AgentResult`` whose tokens and cost are the sums over every model call
made for the step (supervisor and delegates; every agent of a handoff chain).
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from agents.tools.base import ToolError
from policies.decision import PolicyRequest
from runs.execution.calls import AgentCall, AgentResult, ExtraTool
from runs.execution.conversation import bounded, decision_error
from runs.execution.outcomes import StepFailure

if TYPE_CHECKING:
    from collections.abc import Callable

    from agents.models import Agent, AgentVersion

DELEGATE_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "task": {
            "type": "string",
            "minLength": 1,
            "description": "What the agent should do, in plain words.",
        },
        "input": {"description": "Optional data for the task (any JSON value)."},
    },
    "required": ["task"],
    "additionalProperties": False,
}
HANDOFF_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reason": {
            "type": "string",
            "description": "Why the other agent should take over the conversation.",
        }
    },
    "required": ["reason"],
    "additionalProperties": False,
}


def delegate_tool_name(slug: str) -> str:
    """The tool a supervisor calls to delegate to agent ``slug`` (hyphens become ``_``)."""
    return "delegate_to_" + slug.replace("-", "_")


def handoff_tool_name(slug: str) -> str:
    """The tool an agent calls to hand the conversation to agent ``slug``."""
    return "handoff_to_" + slug


@dataclasses.dataclass
class _Totals:
    """Usage summed over several agent results, and the run-context keys they set."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    context_keys: list[str] = dataclasses.field(default_factory=list)

    def add(self, result: AgentResult) -> None:
        self.input_tokens += result.input_tokens
        self.output_tokens += result.output_tokens
        self.cost_usd += result.cost_usd
        for key in result.context_updates:
            if key not in self.context_keys:
                self.context_keys.append(key)

    def context_updates(self, run_context: dict[str, Any]) -> dict[str, Any]:
        """The latest value of every key set during the step (the shared dict has it)."""
        return {k: run_context[k] for k in self.context_keys if k in run_context}


class _Memories:
    """Per-agent memory dicts for a step: the calling agent's own, then ``memory_for``."""

    def __init__(self, call: AgentCall, memory_for: Callable[[Agent], dict[str, Any]] | None):
        self.memory_for = memory_for
        self.by_agent: dict[Any, dict[str, Any]] = {call.agent.pk: call.memory}

    def of(self, agent: Agent) -> dict[str, Any]:
        if agent.pk not in self.by_agent:
            self.by_agent[agent.pk] = self.memory_for(agent) if self.memory_for else {}
        return self.by_agent[agent.pk]


def _child_call(
    call: AgentCall,
    agent: Agent,
    version: AgentVersion,
    *,
    input: Any,
    memory: dict[str, Any],
    messages: list[Any] | None = None,
    extra_tools: list[ExtraTool] | None = None,
) -> AgentCall:
    """An invocation of another agent inside the same run and step (shared context,
    emit, policy, call numbering, cancel check and deadline)."""
    return dataclasses.replace(
        call,
        agent=agent,
        version=version,
        input=input,
        memory=memory,
        messages=messages,
        extra_tools=list(extra_tools or []),
    )


def _delegate_request(call: AgentCall, agent: Agent, arguments: Any) -> PolicyRequest:
    return PolicyRequest(
        tenant_id=call.tenant.pk,
        action="delegate",
        agent=agent.slug,
        agent_tags=tuple(agent.tags or ()),
        arguments=arguments,
        run_id=call.run_id,
        run_input=call.run_input,
    )


# Manager ------------------------------------------------------------------------------------


def run_manager(
    call: AgentCall,
    delegates: list[tuple[Agent, AgentVersion]],
    invoke: Callable[[AgentCall], AgentResult],
    max_delegations: int,
    *,
    memory_for: Callable[[Agent], dict[str, Any]] | None = None,
) -> AgentResult:
    """Run the supervisor ``call.agent`` with one ``delegate_to_<slug>`` tool per delegate.

    Guarantees:

    * A delegation first asks ``policy(action="delegate", agent=<delegate slug>)``; a deny
      or require_approval, or a delegation beyond ``max_delegations``, answers the
      supervisor with a tool error (codes ``policy_denied``, ``approval_required``,
      ``max_delegations``) and invokes nothing.
    * Otherwise ``invoke`` gets a child ``AgentCall``: same tenant, run, step, run
      context, emit, policy, call numbering, cancel check and deadline; the delegate's
      agent and version; ``input`` = the task text, or ``{"task", "input"}`` when the
      supervisor passed an input; no prior messages; memory from ``memory_for(agent)``
      (an empty dict without it).
    * ``agent.delegate`` is emitted with ``phase`` ``start`` before and ``result`` after
      (output or error, latency, the delegate's usage); the delegate's output reaches the
      supervisor as ``{"agent", "output"}``.
    * A delegate's non-retryable ``StepFailure`` becomes a tool error the supervisor can
      work around; a retryable one (provider outage, timeout) and ``StepCancelled`` fail
      the step, so its retry policy applies.
    * The supervisor itself runs through ``invoke`` too (with the delegate tools added).
    * The result is the supervisor's, with tokens and cost summed over the supervisor and
      every delegate, and ``context_updates`` holding every run-context key set by any of
      them (latest value).
    """
    totals = _Totals()
    memories = _Memories(call, memory_for)
    supervisor = call.agent.slug
    count = 0

    def make_handler(agent: Agent, version: AgentVersion) -> Callable[[dict], dict]:
        def handler(arguments: dict[str, Any]) -> dict[str, Any]:
            nonlocal count
            decision = call.policy(_delegate_request(call, agent, arguments))
            if not decision.allowed:
                body = decision_error(decision, f"Delegating to agent '{agent.slug}'")
                raise ToolError(body["error"], code=body["code"])
            if count >= max_delegations:
                raise ToolError(
                    f"This step allows at most {max_delegations} delegations and all are used; "
                    "answer with what you have.",
                    code="max_delegations",
                )
            count += 1
            task = arguments["task"]
            child_input = (
                task
                if arguments.get("input") is None
                else {"task": task, "input": arguments["input"]}
            )
            child = _child_call(call, agent, version, input=child_input, memory=memories.of(agent))
            call.emit(
                "agent.delegate",
                {
                    "phase": "start",
                    "agent": supervisor,
                    "delegate": agent.slug,
                    "number": count,
                    "input": bounded(child_input),
                    "policy": decision.effect,
                },
            )
            started = time.perf_counter()
            try:
                result = invoke(child)
            except StepFailure as failure:
                call.emit(
                    "agent.delegate",
                    {
                        "phase": "result",
                        "agent": supervisor,
                        "delegate": agent.slug,
                        "number": count,
                        "error": failure.as_dict(),
                        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
                    },
                )
                if failure.retryable:
                    raise
                raise ToolError(
                    f"Agent '{agent.slug}' failed: {failure.message}", code=failure.code
                ) from None
            totals.add(result)
            call.emit(
                "agent.delegate",
                {
                    "phase": "result",
                    "agent": supervisor,
                    "delegate": agent.slug,
                    "number": count,
                    "output": bounded(result.output),
                    "latency_ms": round((time.perf_counter() - started) * 1000, 1),
                    "input_tokens": result.input_tokens,
                    "output_tokens": result.output_tokens,
                    "cost_usd": result.cost_usd,
                },
            )
            return {"agent": agent.slug, "output": result.output}

        return handler

    tools = [
        ExtraTool(
            name=delegate_tool_name(agent.slug),
            description=(
                f"Delegate a task to agent '{agent.slug}' ({agent.name})"
                + (f": {agent.description}" if agent.description else ".")
                + " Returns the agent's answer."
            ),
            parameters=DELEGATE_PARAMETERS,
            handler=make_handler(agent, version),
            kind="delegate",
            target=agent.slug,
        )
        for agent, version in delegates
    ]
    result = invoke(dataclasses.replace(call, extra_tools=[*call.extra_tools, *tools]))
    totals.add(result)
    return dataclasses.replace(
        result,
        input_tokens=totals.input_tokens,
        output_tokens=totals.output_tokens,
        cost_usd=totals.cost_usd,
        context_updates=totals.context_updates(call.run_context),
    )


# Handoff ------------------------------------------------------------------------------------


def run_handoff(
    call: AgentCall,
    agents: dict[str, tuple[Agent, AgentVersion]],
    start: str,
    max_handoffs: int,
    *,
    invoke: Callable[[AgentCall], AgentResult],
    memory_for: Callable[[Agent], dict[str, Any]] | None = None,
) -> AgentResult:
    """Run agent ``start`` on ``call.input``; let agents hand the conversation to each other.

    Guarantees:

    * The active agent runs through ``invoke`` with ``handoff_to_<slug>`` tools
      (``{"reason"}``) for every other agent of ``agents``. Calling one asks
      ``policy(action="delegate", agent=<target>)`` first; a refusal is a tool error.
    * On a handoff, ``agent.handoff`` ``{from, to, reason, number}`` is emitted and the
      target continues with the conversation so far (user, assistant and tool turns,
      without the previous agent's system prompt) plus a user turn saying who handed over
      and why; it runs under its own system prompt, tools and memory (the calling
      agent's memory is ``call.memory``, others come from ``memory_for``).
    * More than ``max_handoffs`` handoffs fail the step with code ``max_handoffs``.
    * The result is the last agent's answer and conversation, with tokens and cost summed
      over every agent and ``context_updates`` covering every agent's writes.
    """
    if start not in agents:
        raise StepFailure(
            f"The handoff step starts with agent '{start}', which is not one of its agents "
            f"({', '.join(agents)}).",
            code="config_error",
        )
    totals = _Totals()
    memories = _Memories(call, memory_for)
    active = start
    conversation: list[Any] | None = call.messages
    step_input: Any = call.input
    handoffs = 0
    path = [start]
    while True:
        agent, version = agents[active]
        reasons: dict[str, str] = {}
        tools = [
            ExtraTool(
                name=handoff_tool_name(slug),
                description=(
                    f"Hand this conversation over to agent '{slug}' ({other.name})"
                    + (f": {other.description}" if other.description else ".")
                    + " Use it when that agent is better placed to continue."
                ),
                parameters=HANDOFF_PARAMETERS,
                handler=_handoff_handler(call, other, reasons),
                kind="handoff",
                target=slug,
            )
            for slug, (other, _version) in agents.items()
            if slug != active
        ]
        child = _child_call(
            call,
            agent,
            version,
            input=step_input,
            memory=memories.of(agent),
            messages=conversation,
            extra_tools=[*call.extra_tools, *tools],
        )
        result = invoke(child)
        totals.add(result)
        if result.handoff_to is None:
            return dataclasses.replace(
                result,
                input_tokens=totals.input_tokens,
                output_tokens=totals.output_tokens,
                cost_usd=totals.cost_usd,
                context_updates=totals.context_updates(call.run_context),
            )
        target = result.handoff_to
        reason = reasons.get(target, "")
        if handoffs >= max_handoffs:
            raise StepFailure(
                f"Agent '{active}' tried to hand off to '{target}', but the step allows at most "
                f"{max_handoffs} handoffs ({' -> '.join(path)}).",
                code="max_handoffs",
                details={"max_handoffs": max_handoffs, "path": path},
            )
        handoffs += 1
        path.append(target)
        call.emit(
            "agent.handoff",
            {"from": active, "to": target, "reason": reason, "number": handoffs},
        )
        conversation = result.messages
        step_input = (
            f"Agent '{active}' handed this conversation over to you (agent '{target}')"
            + (f" because: {reason}" if reason else "")
            + ". Continue from here and answer the user."
        )
        active = target


def _handoff_handler(
    call: AgentCall, target: Agent, reasons: dict[str, str]
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def handler(arguments: dict[str, Any]) -> dict[str, Any]:
        decision = call.policy(_delegate_request(call, target, arguments))
        if not decision.allowed:
            body = decision_error(decision, f"Handing off to agent '{target.slug}'")
            raise ToolError(body["error"], code=body["code"])
        reasons[target.slug] = str(arguments.get("reason") or "")
        return {"handed_off_to": target.slug, "reason": reasons[target.slug]}

    return handler
