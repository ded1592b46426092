"""Agent invocations inside steps: by agent kind (llm, http, router, human), plus manager and
handoff steps. Every invocation goes through ``invoke``, which passes the policy decision
point (``invoke_agent``) first, whatever the agent's kind and whichever step runs it."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from agents.choices import AgentKind
from agents.http_agent import HttpAgentError, call_http_agent
from agents.models import Agent, AgentVersion
from controlplane.choices import Status
from runs.approvals.services import approval_create
from runs.execution.calls import AgentCall, AgentResult, authorize_invocation
from runs.execution.executors.routing import route_with_agent
from runs.execution.llm import run_llm_agent
from runs.execution.orchestration import run_handoff, run_manager
from runs.execution.outcomes import StepFailure, StepOutcome, StepWaiting
from runs.execution.step_context import StepContext
from runs.models import AgentMemory, StepRun


def load_agent(ctx: StepContext, slug: str) -> tuple[Agent, AgentVersion]:
    """The active agent ``slug`` of the run's tenant and the version the run pinned.

    The run pinned the versions of its agents when it started (``Run.agent_versions``), so
    a version published since does not reach it. A slug the run did not pin (a run started
    before pinning existed) gets the agent's current version.
    """
    pinned = (ctx.run.agent_versions or {}).get(slug)
    if pinned is not None:
        version = (
            AgentVersion.objects.for_tenant(ctx.run.tenant_id)
            .select_related("agent")
            .filter(pk=pinned)
            .first()
        )
        if version is None:
            raise StepFailure(
                f"The version of agent {slug!r} this run pinned no longer exists.",
                code="not_found",
            )
        agent = version.agent
        if agent.status != Status.ACTIVE:
            raise StepFailure(f"Agent {slug!r} is disabled.", code="disabled")
        return agent, version
    agent = (
        Agent.objects.for_tenant(ctx.run.tenant_id)
        .select_related("current_version")
        .filter(slug=slug)
        .first()
    )
    if agent is None:
        raise StepFailure(f"No agent {slug!r} in this tenant.", code="not_found")
    if agent.status != Status.ACTIVE:
        raise StepFailure(f"Agent {slug!r} is disabled.", code="disabled")
    if agent.current_version is None:
        raise StepFailure(f"Agent {slug!r} has no published version.", code="not_found")
    return agent, agent.current_version


def policy_for(ctx: StepContext):
    """The step's policy check: decides, records, asks for approvals (see StepPolicy)."""
    return ctx.policy().check


def _memory(agent: Agent) -> dict[str, Any]:
    return dict(
        AgentMemory.objects.for_tenant(agent.tenant_id)
        .filter(agent=agent)
        .values_list("key", "value")
    )


def _save_memory(agent: Agent, before: dict[str, Any], after: dict[str, Any]) -> None:
    for key, value in after.items():
        if before.get(key, object()) != value:
            AgentMemory.objects.for_tenant(agent.tenant_id).update_or_create(
                tenant_id=agent.tenant_id, agent=agent, key=key, defaults={"value": value}
            )


def make_call(
    ctx: StepContext,
    agent: Agent,
    version: AgentVersion,
    input: Any,
    messages: list[Any] | None = None,
    tools: list[str] | None = None,
) -> AgentCall:
    return AgentCall(
        tenant=ctx.run.tenant,
        run_id=ctx.run.pk,
        step_key=ctx.step.step_key,
        agent=agent,
        version=version,
        input=input,
        run_input=ctx.run.input,
        run_context=ctx.run_context,
        memory=_memory(agent),
        emit=ctx.emit,
        policy=policy_for(ctx),
        budget=ctx.policy(),
        next_call_index=ctx.next_call_index,
        check_cancel=ctx.check_cancel,
        deadline=ctx.deadline,
        messages=messages,
        allowed_tools=frozenset(tools) if tools is not None else None,
    )


def invoke(call: AgentCall, ctx: StepContext, *, may_wait: bool = False) -> AgentResult:
    """Run one agent of any kind: the only way a step runs an agent.

    Guarantees: ``authorize_invocation`` (policy action ``invoke_agent``, recorded as a
    ``policy.decision`` event) is asked before the agent runs, for llm, http, router and
    human agents alike; a refusal fails with ``policy_denied`` and runs nothing. Memory
    changes are saved. A human agent answers only as a step of its own (``may_wait``): it
    raises ``StepWaiting`` until a person answers.
    """
    agent = call.agent
    ctx.check_cancel()
    authorize_invocation(call)
    memory_before = dict(call.memory)
    if agent.kind == AgentKind.LLM:
        result = run_llm_agent(call)
    elif agent.kind == AgentKind.HTTP:
        result = _invoke_http(call, ctx)
    elif agent.kind == AgentKind.ROUTER:
        route = route_with_agent(ctx, agent, call.version, call.input)
        result = AgentResult(output={"route": route}, route=route)
    elif agent.kind == AgentKind.HUMAN and may_wait:
        human_step(ctx, agent, call.version)  # raises StepWaiting
        raise AssertionError("human_step always waits")
    else:
        raise StepFailure(
            f"Agent {agent.slug!r} is a human agent: use it as a step of its own, not "
            "inside a parallel, manager or handoff step.",
            code="unsupported",
        )
    _save_memory(agent, memory_before, call.memory)
    return result


def _invoke_http(call: AgentCall, ctx: StepContext) -> AgentResult:
    started = timezone.now()
    try:
        answer = call_http_agent(
            version=call.version,
            input=call.input,
            context=call.run_context,
            run_id=str(call.run_id),
            step=call.step_key,
            idempotency_key=call.idempotency_key(call.next_call_index()),
        )
    except HttpAgentError as exc:
        ctx.emit(
            "agent.http", {"agent": call.agent.slug, "error": exc.message, "status": exc.status}
        )
        raise StepFailure(
            exc.message,
            code="http_agent_error",
            retryable=exc.retryable,
            details={"status": exc.status},
        ) from None
    ctx.emit(
        "agent.http",
        {
            "agent": call.agent.slug,
            "status": answer.status,
            "latency_ms": round(answer.latency_ms, 1),
            "elapsed_ms": round((timezone.now() - started).total_seconds() * 1000, 1),
        },
    )
    call.run_context.update(answer.context)
    return AgentResult(output=answer.output, context_updates=dict(answer.context))


def _outcome(result: AgentResult, ctx: StepContext, before: dict[str, Any]) -> StepOutcome:
    updates = {k: v for k, v in ctx.run_context.items() if before.get(k, object()) != v}
    updates.update(result.context_updates)
    return StepOutcome(
        output=result.output,
        route=result.route,
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
        cost_usd=result.cost_usd,
        context_updates=updates,
    )


def _pin_version(ctx: StepContext, version: AgentVersion) -> None:
    if ctx.step.agent_version_id is None:
        StepRun.objects.unscoped().filter(pk=ctx.step.pk).update(agent_version=version)


def agent_step(ctx: StepContext) -> StepOutcome:
    """A single agent with its tool loop (or a fallback agent after the step failed)."""
    slug = (ctx.step.state or {}).get("fallback_agent") or ctx.step_def.spec["agent"]
    agent, version = load_agent(ctx, slug)
    _pin_version(ctx, version)
    before = dict(ctx.run_context)
    tools = ctx.step_def.spec.get("tools")
    call = make_call(ctx, agent, version, ctx.step.input, tools=tools)
    result = invoke(call, ctx, may_wait=True)
    return _outcome(result, ctx, before)


def human_step(ctx: StepContext, agent: Agent, version: AgentVersion) -> StepOutcome:
    """A person answers through the dashboard or the API; the step waits for them.

    Called by ``invoke`` only, after the policy check."""
    config = version.config
    approval = approval_create(
        run=ctx.run,
        step_run=ctx.step,
        kind="input",
        title=f"{agent.name}: {config.get('instructions') or 'answer this step'}"[:300],
        details={
            "input": ctx.step.input,
            "instructions": config.get("instructions", ""),
            "agent": agent.slug,
        },
        required_role=config.get("assignee_role", "operator"),
        response_schema=config.get("response_schema"),
    )
    raise StepWaiting(approval)


def manager_step(ctx: StepContext) -> StepOutcome:
    """A supervisor llm agent delegating to other agents exposed to it as tools."""
    spec = ctx.step_def.spec
    supervisor, version = load_agent(ctx, spec["agent"])
    delegates = [load_agent(ctx, slug) for slug in spec.get("delegates", [])]
    before = dict(ctx.run_context)
    memories = _MemoryBook()
    call = make_call(ctx, supervisor, version, ctx.step.input, tools=spec.get("tools"))
    memories.track(supervisor, call.memory)
    result = run_manager(
        call,
        delegates,
        lambda child: invoke(child, ctx),  # the supervisor and every delegate
        spec.get("max_delegations", 10),
        memory_for=memories.memory_for,
    )
    memories.save()
    return _outcome(result, ctx, before)


def handoff_step(ctx: StepContext) -> StepOutcome:
    """Agents passing control and the conversation to one another."""
    spec = ctx.step_def.spec
    agents = {slug: load_agent(ctx, slug) for slug in spec["agents"]}
    start = spec.get("start", spec["agents"][0])
    start_agent, start_version = agents[start]
    before = dict(ctx.run_context)
    memories = _MemoryBook()
    call = make_call(ctx, start_agent, start_version, ctx.step.input)
    memories.track(start_agent, call.memory)
    result = run_handoff(
        call,
        agents,
        start,
        spec.get("max_handoffs", 5),
        invoke=lambda child: invoke(child, ctx),
        memory_for=memories.memory_for,
    )
    memories.save()
    return _outcome(result, ctx, before)


class _MemoryBook:
    """Per-agent memory dicts handed to orchestrated agents, saved when the step ends."""

    def __init__(self) -> None:
        self.entries: dict[int, tuple[Agent, dict[str, Any], dict[str, Any]]] = {}

    def track(self, agent: Agent, memory: dict[str, Any]) -> dict[str, Any]:
        self.entries.setdefault(agent.pk, (agent, dict(memory), memory))
        return self.entries[agent.pk][2]

    def memory_for(self, agent: Agent) -> dict[str, Any]:
        if agent.pk not in self.entries:
            return self.track(agent, _memory(agent))
        return self.entries[agent.pk][2]

    def save(self) -> None:
        for agent, before, after in self.entries.values():
            _save_memory(agent, before, after)
