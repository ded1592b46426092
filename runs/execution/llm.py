"""LLM agent steps: the tool-calling loop over the agent's provider adapter.

``run_llm_agent`` runs one invocation of an llm-kind agent for the step runner. The
adapter comes from the agent's provider (the official ``openai`` / ``anthropic`` SDKs,
or the offline simulator), so this module never speaks a wire format. Every model call
and every tool call is an event (``model.call``, ``tool.call``) with tokens, cost and
latency; every model call and tool call passes the policy decision point first (the
invocation itself was checked by the runner's ``invoke``, see ``authorize_invocation``).

Tools offered to the model, in this order: the version's pinned registry tools (active
ones of the call's tenant), the call's ``extra_tools`` (delegation, handoff), and the engine
tools the version's ``builtin_tools`` grants (none by default): ``context`` gives
``context_get`` / ``context_set`` (the run's shared context), ``memory`` gives
``memory_get`` / ``memory_set`` (the agent's long-term memory). Engine tool calls pass the
policy decision point like registry tools (``call_tool``, risk read for get, write for set).

A tool that fails, is refused by a policy, needs an approval or does not exist answers
the model with ``{"error": ..., "code": ...}`` so the model can recover. The step itself
fails (``StepFailure``) only for what the model cannot fix: a refused invocation or model
call, a provider error, the deadline, too many iterations, output that is still invalid
after one repair attempt.

Over 400 lines because it is one job, the loop of one invocation (its tools, its model
calls, its policy checks, its output repair); what it says and keeps (messages as JSON,
output checks, estimates) lives in ``conversation``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from agents.choices import BUILTIN_TOOL_GROUPS, BUILTIN_TOOL_RISKS, AgentKind
from agents.models import ProviderConnection, Tool
from agents.providers.base import (
    Adapter,
    ChatResult,
    Message,
    ProviderError,
    ToolCallRequest,
    ToolSpec,
    cost_usd,
    get_adapter,
)
from agents.tools.base import ToolContext, ToolError, execute_tool, validation_errors
from controlplane.choices import Status
from policies.choices import Effect
from policies.decision import Decision, PolicyRequest
from runs.execution.calls import AgentCall, AgentResult, ExtraTool
from runs.execution.conversation import (
    MAX_ERRORS_SHOWN,
    bounded,
    decision_error,
    estimate_input_tokens,
    format_errors,
    input_text,
    message_from_dict,
    parse_output,
)
from runs.execution.outcomes import StepFailure, StepWaiting

DEFAULT_MAX_ITERATIONS = 8
EVENT_CONTENT_LIMIT = 2_000  # characters of model text kept in a model.call event
TOOL_RESULT_LIMIT = 40_000  # characters of a tool result sent back to the model

CONTEXT_GET = "context_get"
CONTEXT_SET = "context_set"
MEMORY_GET = "memory_get"
MEMORY_SET = "memory_set"
ENGINE_TOOL_NAMES = (CONTEXT_GET, CONTEXT_SET, MEMORY_GET, MEMORY_SET)

_KEY_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 200}
_GET_PARAMETERS = {
    "type": "object",
    "properties": {"key": _KEY_SCHEMA},
    "required": ["key"],
    "additionalProperties": False,
}
_SET_PARAMETERS = {
    "type": "object",
    "properties": {
        "key": _KEY_SCHEMA,
        "value": {"description": "Any JSON value (string, number, object, list, ...)."},
    },
    "required": ["key", "value"],
    "additionalProperties": False,
}

REPAIR_PROMPT = (
    "Your answer does not match the required JSON schema:\n{errors}\n"
    "Reply again with the corrected JSON only: no prose, no code fence."
)


def run_llm_agent(call: AgentCall) -> AgentResult:
    """Run ``call.agent`` (an llm-kind agent, version ``call.version``) to its final answer.

    Guarantees:

    * The conversation sent is the version's system prompt, then ``call.messages`` without
      their system turns (a handoff's conversation so far), then one user turn with
      ``call.input`` (a string as is, anything else as pretty JSON; omitted when
      ``call.messages`` is given and ``call.input`` is None).
    * ``policy(call_model)`` is asked before every model call; a non-allow fails the step
      with code ``policy_denied``. ``policy(invoke_agent)`` is not asked here: the caller
      (``invoke`` in ``runs.execution.executors.agents``, the one gate for every agent kind)
      asked it. ``check_cancel`` runs before every model and tool call.
    * Every model call emits ``model.call`` (a failed one ``model.error``); every tool
      call emits ``tool.call``. Tokens and cost in the result are the sums over this
      invocation's model calls.
    * Registry tools get an idempotency key from ``call.next_call_index()`` (consumed
      before the policy check, so numbering follows the order of the model's calls).
    * ``context_set`` writes ``call.run_context`` and ``result.context_updates``;
      ``memory_set`` writes ``call.memory``. Keys a registry tool sets in the run context
      are recorded in ``context_updates`` as well.
    * A handoff tool (an ``ExtraTool`` of kind ``handoff``) whose handler succeeds ends the
      loop with ``result.handoff_to`` set; later calls of the same turn are answered as
      skipped.
    * With ``config.output_schema`` the output is the parsed, validated JSON value
      (one repair round, then ``StepFailure(code="invalid_output")``); without, the text.
    * ``result.messages`` is the conversation without system turns, as ``Message``s.

    Raises ``StepFailure`` (codes ``config_error``, ``policy_denied``, ``timeout``,
    ``provider_error``, ``invalid_schema``, ``invalid_output``, ``max_iterations``) and
    lets ``StepCancelled`` from ``check_cancel`` through.
    """
    return _AgentLoop(call).run()


# The loop -----------------------------------------------------------------------------------


@dataclasses.dataclass
class _Outcome:
    """What one tool call produced: a result object or an error body, for message and event."""

    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    policy: str | None = None
    idempotency_key: str | None = None
    kind: str = "registry"
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


class _AgentLoop:
    """State of one ``run_llm_agent`` invocation (see its docstring for the guarantees)."""

    def __init__(self, call: AgentCall) -> None:
        self.call = call
        self.slug = call.agent.slug
        self.config: dict[str, Any] = dict(call.version.config or {})
        self.model = str(self.config.get("model") or "")
        self.schema: dict[str, Any] | None = self.config.get("output_schema") or None
        self.context_updates: dict[str, Any] = {}
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost = 0.0

    # -- setup -------------------------------------------------------------------------------

    def run(self) -> AgentResult:
        call = self.call
        if call.agent.kind != AgentKind.LLM:
            raise self.config_error(
                f"Agent '{self.slug}' is of kind '{call.agent.kind}', not an llm agent."
            )
        if not self.model:
            raise self.config_error(f"Agent '{self.slug}' names no model in its configuration.")
        provider = self.provider()
        try:
            adapter = get_adapter(provider)
        except ProviderError as err:
            raise self.config_error(err.message) from None
        if hasattr(adapter, "on_slot_wait"):
            # the run shows why the step is not calling its model yet
            adapter.on_slot_wait = lambda: call.emit(
                "step.waiting_for_slot",
                {
                    "agent": self.slug,
                    "provider": provider.slug,
                    "reason": (
                        f"waiting for a provider slot: all {provider.max_concurrency} are in use"
                    ),
                },
            )
        try:
            return self.loop(adapter, provider)
        except StepWaiting as waiting:  # a policy asked for an approval: keep what was spent
            waiting.input_tokens += self.input_tokens
            waiting.output_tokens += self.output_tokens
            waiting.cost_usd += self.cost
            raise

    def config_error(self, message: str) -> StepFailure:
        return StepFailure(message, code="config_error")

    def provider(self) -> ProviderConnection:
        slug = self.config.get("provider") or ""
        provider = ProviderConnection.objects.for_tenant(self.call.tenant).filter(slug=slug).first()
        if provider is None:
            raise self.config_error(
                f"Agent '{self.slug}' uses provider '{slug}', which does not exist in this tenant."
            )
        if provider.status != Status.ACTIVE:
            raise self.config_error(
                f"Agent '{self.slug}' uses provider '{slug}', which is disabled; enable it "
                "or publish a version with another provider."
            )
        return provider

    def registry_tools(self) -> dict[str, Tool]:
        """The version's pinned tools that are active in the call's tenant, by slug."""
        pinned = [entry.get("id") for entry in self.call.version.tools or []]
        rows = Tool.objects.for_tenant(self.call.tenant).filter(
            pk__in=[p for p in pinned if p is not None], status=Status.ACTIVE
        )
        by_id = {tool.pk: tool for tool in rows}
        allowed = self.call.allowed_tools
        return {
            by_id[p].slug: by_id[p]
            for p in pinned
            if p in by_id and (allowed is None or by_id[p].slug in allowed)
        }

    def engine_tools(self) -> list[ExtraTool]:
        """The engine tools of the groups the version's ``builtin_tools`` grants."""
        call = self.call
        granted = {
            name
            for group in self.config.get("builtin_tools") or ()
            for name in BUILTIN_TOOL_GROUPS.get(group, ())
        }

        def context_get(arguments: dict[str, Any]) -> dict[str, Any]:
            key = arguments["key"]
            found = key in call.run_context
            return {"key": key, "found": found, "value": call.run_context.get(key)}

        def context_set(arguments: dict[str, Any]) -> dict[str, Any]:
            call.run_context[arguments["key"]] = arguments["value"]
            self.context_updates[arguments["key"]] = arguments["value"]
            return {"key": arguments["key"], "saved": True}

        def memory_get(arguments: dict[str, Any]) -> dict[str, Any]:
            key = arguments["key"]
            found = key in call.memory
            return {"key": key, "found": found, "value": call.memory.get(key)}

        def memory_set(arguments: dict[str, Any]) -> dict[str, Any]:
            call.memory[arguments["key"]] = arguments["value"]
            return {"key": arguments["key"], "saved": True}

        tools = [
            ExtraTool(
                CONTEXT_GET,
                "Read a value from the run's shared context (visible to every step and agent "
                "of this run).",
                _GET_PARAMETERS,
                context_get,
            ),
            ExtraTool(
                CONTEXT_SET,
                "Store a value in the run's shared context under a key, for later steps and "
                "other agents of this run.",
                _SET_PARAMETERS,
                context_set,
            ),
            ExtraTool(
                MEMORY_GET,
                "Read a value from your long-term memory (kept across runs).",
                _GET_PARAMETERS,
                memory_get,
            ),
            ExtraTool(
                MEMORY_SET,
                "Remember a value under a key in your long-term memory (kept across runs).",
                _SET_PARAMETERS,
                memory_set,
            ),
        ]
        for tool in tools:
            tool.risk = BUILTIN_TOOL_RISKS[tool.name]
        return [tool for tool in tools if tool.name in granted]

    def first_messages(self) -> list[Message]:
        call = self.call
        prior = [message_from_dict(m) for m in call.messages or []]
        conversation = [m for m in prior if m.role != "system"]
        if not (prior and call.input is None):
            conversation.append(Message("user", input_text(call.input)))
        return conversation

    def request(self, action: str, **fields: Any) -> PolicyRequest:
        call = self.call
        return PolicyRequest(
            tenant_id=call.tenant.pk,
            action=action,
            agent=self.slug,
            agent_tags=tuple(call.agent.tags or ()),
            run_id=call.run_id,
            run_input=call.run_input,
            **fields,
        )

    def require_allowed(self, request: PolicyRequest, what: str, *, code: str) -> Decision:
        decision = self.call.policy(request)
        if decision.allowed:
            return decision
        needs_approval = decision.effect == Effect.REQUIRE_APPROVAL
        verb = "requires an approval for" if needs_approval else "denied"
        raise StepFailure(
            f"A policy {verb} {what}: {decision.reason}",
            code=code,
            details={"effect": decision.effect, "rule": decision.rule, "action": request.action},
        )

    def check_deadline(self, before: str) -> float | None:
        remaining = self.call.remaining()
        if remaining is not None and remaining <= 0:
            raise StepFailure(
                f"The step ran out of time before {before} (agent '{self.slug}').",
                code="timeout",
                retryable=True,
            )
        return remaining

    # -- the loop ----------------------------------------------------------------------------

    def loop(self, adapter: Adapter, provider: ProviderConnection) -> AgentResult:
        registry = self.registry_tools()
        extras: dict[str, ExtraTool] = {}
        for tool in [*self.call.extra_tools, *self.engine_tools()]:
            if tool.name not in registry:
                extras.setdefault(tool.name, tool)
        specs = [
            ToolSpec(
                name=slug,
                description=tool.description or tool.name,
                parameters=tool.input_schema or {"type": "object"},
            )
            for slug, tool in registry.items()
        ] + [ToolSpec(t.name, t.description, t.parameters) for t in extras.values()]
        system = str(self.config.get("system_prompt") or "")
        conversation = self.first_messages()
        max_iterations = int(self.config.get("max_iterations") or DEFAULT_MAX_ITERATIONS)
        budget = max_iterations
        calls = 0
        repaired = False
        while True:
            if calls >= budget:
                raise StepFailure(
                    f"Agent '{self.slug}' did not reach a final answer within {max_iterations} "
                    "model calls (its max_iterations); it kept calling tools.",
                    code="max_iterations",
                    details={"max_iterations": max_iterations},
                )
            calls += 1
            messages = ([Message("system", system)] if system else []) + conversation
            reply = self.chat(adapter, provider, messages, specs, iteration=calls)
            conversation.append(
                Message("assistant", reply.content, tool_calls=list(reply.tool_calls))
            )
            if reply.tool_calls:
                handoff_to = self.run_tools(reply.tool_calls, registry, extras, conversation)
                if handoff_to is not None:
                    return self.result(reply.content, conversation, handoff_to=handoff_to)
                continue
            if self.schema is None:
                return self.result(reply.content, conversation)
            try:
                value, errors = parse_output(reply.content, self.schema)
            except ToolError as exc:
                raise StepFailure(
                    f"The output schema of agent '{self.slug}' cannot be used: {exc.message}",
                    code="invalid_schema",
                ) from None
            if not errors:
                return self.result(value, conversation)
            listing = format_errors(errors)
            if repaired:
                raise StepFailure(
                    f"Agent '{self.slug}' answered with output that does not match its output "
                    f"schema, even after one repair attempt: {listing}",
                    code="invalid_output",
                    details={"errors": errors[:MAX_ERRORS_SHOWN], "content": reply.content[:500]},
                )
            repaired = True
            budget += 1  # the repair round does not use up the agent's iterations
            self.call.emit(
                "model.repair",
                {
                    "agent": self.slug,
                    "errors": errors[:MAX_ERRORS_SHOWN],
                    "content": reply.content[:EVENT_CONTENT_LIMIT],
                },
            )
            lines = "\n".join(f"- {e['path']}: {e['message']}" for e in errors[:MAX_ERRORS_SHOWN])
            conversation.append(Message("user", REPAIR_PROMPT.format(errors=lines)))

    def result(
        self, output: Any, conversation: list[Message], *, handoff_to: str | None = None
    ) -> AgentResult:
        return AgentResult(
            output=output,
            messages=list(conversation),
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cost_usd=self.cost,
            handoff_to=handoff_to,
            context_updates=dict(self.context_updates),
        )

    def chat(
        self,
        adapter: Adapter,
        provider: ProviderConnection,
        messages: list[Message],
        specs: list[ToolSpec],
        *,
        iteration: int,
    ) -> ChatResult:
        call = self.call
        call.check_cancel()
        remaining = self.check_deadline("the next model call")
        timeout = float(provider.timeout_seconds or 60)
        if remaining is not None:
            timeout = min(timeout, remaining)
        self.require_allowed(
            self.request("call_model", model=self.model),
            f"calling model '{self.model}' for agent '{self.slug}'",
            code="policy_denied",
        )
        reservation = None
        if call.budget is not None:
            reservation = call.budget.before_model(
                provider=provider,
                model=self.model,
                max_tokens=self.config.get("max_tokens"),
                input_tokens=estimate_input_tokens(messages, specs),
            )
        started = time.perf_counter()
        try:
            reply = adapter.chat(
                model=self.model,
                messages=messages,
                tools=specs,
                temperature=self.config.get("temperature"),
                max_tokens=self.config.get("max_tokens"),
                response_schema=self.schema,
                timeout=timeout,
            )
        except ProviderError as err:
            if call.budget is not None:
                call.budget.model_failed(reservation)
            latency_ms = (time.perf_counter() - started) * 1000
            call.emit(
                "model.error",
                {
                    "agent": self.slug,
                    "model": self.model,
                    "provider": provider.slug,
                    "error": err.message,
                    "status": err.status,
                    "retryable": err.retryable,
                    "latency_ms": round(latency_ms, 1),
                },
            )
            if call.deadline is not None and time.monotonic() >= call.deadline:
                raise StepFailure(
                    f"The step ran out of time while agent '{self.slug}' waited for its model: "
                    f"{err.message}",
                    code="timeout",
                    retryable=True,
                ) from None
            raise StepFailure(
                f"Agent '{self.slug}' could not get an answer from {adapter.label}: {err.message}",
                code="provider_error",
                retryable=err.retryable,
                details={"provider": provider.slug, "status": err.status},
            ) from None
        priced = reply.model if provider.price_of(reply.model) != (0.0, 0.0) else self.model
        cost = cost_usd(provider, priced, reply.input_tokens, reply.output_tokens)
        self.input_tokens += reply.input_tokens
        self.output_tokens += reply.output_tokens
        self.cost += cost
        call.emit(
            "model.call",
            {
                "agent": self.slug,
                "model": reply.model or self.model,
                "provider": provider.slug,
                "simulated": reply.simulated,
                "iteration": iteration,
                "input_tokens": reply.input_tokens,
                "output_tokens": reply.output_tokens,
                "cost_usd": cost,
                "latency_ms": round(reply.latency_ms, 1),
                "stop_reason": reply.stop_reason,
                "tool_calls": [c.name for c in reply.tool_calls],
                "content": reply.content[:EVENT_CONTENT_LIMIT],
            },
        )
        if call.budget is not None:
            # after the event: a soft limit this call crossed pauses the step here
            call.budget.after_model(
                reservation, tokens=reply.input_tokens + reply.output_tokens, cost=cost
            )
        return reply

    # -- tools -------------------------------------------------------------------------------

    def run_tools(
        self,
        requests: list[ToolCallRequest],
        registry: dict[str, Tool],
        extras: dict[str, ExtraTool],
        conversation: list[Message],
    ) -> str | None:
        """Answer every tool call of one turn in order; the handoff target if one happened."""
        handoff_to: str | None = None
        for request in requests:
            started = time.perf_counter()
            if handoff_to is not None:
                outcome = _Outcome(
                    error={
                        "error": f"Not run: control was handed off to agent '{handoff_to}'.",
                        "code": "skipped",
                    },
                    kind="skipped",
                )
            else:
                self.call.check_cancel()
                self.check_deadline(f"calling tool '{request.name}'")
                if request.name in registry:
                    outcome = self.call_registry_tool(registry[request.name], request)
                elif request.name in extras:
                    outcome = self.call_extra_tool(extras[request.name], request)
                    tool = extras[request.name]
                    if tool.kind == "handoff" and outcome.error is None:
                        handoff_to = tool.target
                else:
                    offered = ", ".join([*registry, *extras])
                    choices = f"Use one of: {offered}." if offered else "This agent has no tools."
                    outcome = _Outcome(
                        error={
                            "error": f"There is no tool named '{request.name}'. {choices}",
                            "code": "unknown_tool",
                        },
                        kind="unknown",
                    )
            body = outcome.error if outcome.error is not None else outcome.result
            content = json.dumps(body, ensure_ascii=False, default=str)
            if len(content) > TOOL_RESULT_LIMIT:
                content = content[:TOOL_RESULT_LIMIT] + " [truncated]"
            conversation.append(
                Message("tool", content, tool_call_id=request.id, name=request.name)
            )
            payload: dict[str, Any] = {
                "agent": self.slug,
                "tool": request.name,
                "kind": outcome.kind,
                "arguments": bounded(request.arguments),
                **({"error": outcome.error} if outcome.error is not None else {}),
                **({"result": bounded(outcome.result)} if outcome.error is None else {}),
                "latency_ms": round((time.perf_counter() - started) * 1000, 1),
                "idempotency_key": outcome.idempotency_key,
                "policy": outcome.policy,
                **outcome.extra,
            }
            self.call.emit("tool.call", payload)
        return handoff_to

    def call_registry_tool(self, tool: Tool, request: ToolCallRequest) -> _Outcome:
        call = self.call
        key = call.idempotency_key(call.next_call_index())
        decision = call.policy(
            self.request(
                "call_tool",
                tool=tool.slug,
                tool_tags=tuple(tool.tags or ()),
                risk=tool.risk,
                arguments=request.arguments,
            )
        )
        outcome = _Outcome(policy=decision.effect, idempotency_key=key, extra={"risk": tool.risk})
        if not decision.allowed:
            outcome.error = decision_error(decision, f"Calling tool '{tool.slug}'")
            return outcome
        before = dict(call.run_context)
        ctx = ToolContext(
            tenant=call.tenant,
            run_context=call.run_context,
            agent_memory=call.memory,
            idempotency_key=key,
            caller=f"agent:{self.slug}",
        )
        try:
            outcome.result = execute_tool(tool, request.arguments, ctx)
        except ToolError as exc:
            outcome.error = {
                "error": exc.message,
                "code": exc.code,
                **({"retryable": True} if exc.retryable else {}),
            }
        for name, value in call.run_context.items():
            if name not in before or before[name] != value:
                self.context_updates[name] = value
        return outcome

    def call_extra_tool(self, tool: ExtraTool, request: ToolCallRequest) -> _Outcome:
        outcome = _Outcome(kind=tool.kind)
        if tool.target:
            outcome.extra["target"] = tool.target
        if tool.kind == "builtin":  # delegate and handoff handlers ask their own question
            decision = self.call.policy(
                self.request(
                    "call_tool", tool=tool.name, risk=tool.risk, arguments=request.arguments
                )
            )
            outcome.policy = decision.effect
            outcome.extra["risk"] = tool.risk
            if not decision.allowed:
                outcome.error = decision_error(decision, f"Calling tool '{tool.name}'")
                return outcome
        try:
            problems = validation_errors(tool.parameters, request.arguments)
            if problems:
                raise ToolError(
                    f"Invalid arguments for tool '{tool.name}': {format_errors(problems)}.",
                    code="invalid_arguments",
                )
            outcome.result = tool.handler(request.arguments)
        except ToolError as exc:
            outcome.error = {"error": exc.message, "code": exc.code}
        return outcome
