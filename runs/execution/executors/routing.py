"""Router agents choose a route: their ordered rules, or an llm classifier.

``invoke`` (executors.agents) runs a router agent through ``route_with_agent``; a router
step's own rules go through ``resolve_route`` (executors.flow).
"""

from __future__ import annotations

import json
import time
from typing import Any

from agents.models import Agent, AgentVersion, ProviderConnection
from agents.providers.base import Message, ProviderError, cost_usd, get_adapter
from policies.decision import PolicyRequest
from runs.engine.conditions import ConditionError, evaluate
from runs.execution.outcomes import StepFailure
from runs.execution.step_context import StepContext


def resolve_route(rules: list[dict[str, Any]], scope: dict[str, Any], default: str | None) -> str:
    for index, rule in enumerate(rules):
        try:
            if evaluate(rule["when"], scope):
                return rule["route"]
        except ConditionError as exc:  # e.g. text too long for a regular expression
            raise StepFailure(f"rules[{index}].when: {exc}", code="condition_error") from None
    if default:
        return default
    raise StepFailure("No routing rule matched and no default_route is set.", code="no_route")


def route_with_agent(ctx: StepContext, agent: Agent, version: AgentVersion, step_input: Any) -> str:
    """Choose a route with a router agent: its ordered rules, or an llm classifier.

    Called by ``invoke`` only, after the agent invocation passed the policy check."""
    config = version.config
    if config.get("mode", "rules") == "rules":
        scope = {"input": step_input, "context": ctx.run_context, "run": {"input": ctx.run.input}}
        return resolve_route(config.get("rules", []), scope, config.get("default_route"))
    return _classify(ctx, agent, version, step_input)


def _classify(ctx: StepContext, agent: Agent, version: AgentVersion, step_input: Any) -> str:
    config = version.config
    routes = [r["name"] for r in config.get("routes", [])]
    provider = (
        ProviderConnection.objects.for_tenant(ctx.run.tenant_id)
        .filter(slug=config["provider"])
        .first()
    )
    if provider is None:
        raise StepFailure(f"Provider {config['provider']!r} is missing.", code="not_found")
    described = "\n".join(
        f"- {r['name']}: {r.get('description', '')}" for r in config.get("routes", [])
    )
    system = (config.get("instructions") or "Classify the input into exactly one route.") + (
        f'\nRoutes:\n{described}\nAnswer with JSON {{"route": <name>}}.'
    )
    schema = {
        "type": "object",
        "required": ["route"],
        "additionalProperties": False,
        "properties": {"route": {"enum": routes}},
    }
    decision = ctx.policy().check(
        PolicyRequest(
            tenant_id=ctx.run.tenant_id,
            action="call_model",
            agent=agent.slug,
            model=config["model"],
            run_id=ctx.run.pk,
            run_input=ctx.run.input,
        )
    )
    if not decision.allowed:
        raise StepFailure(f"Policy refused the model call: {decision.reason}", code="policy_denied")
    try:
        result = get_adapter(provider).chat(
            model=config["model"],
            messages=[
                Message(role="system", content=system),
                Message(
                    role="user",
                    content=step_input
                    if isinstance(step_input, str)
                    else json.dumps(step_input, default=str),
                ),
            ],
            response_schema=schema,
            temperature=0,
            timeout=ctx.deadline and max(1.0, ctx.deadline - time.monotonic()),
        )
    except ProviderError as exc:
        raise StepFailure(exc.message, code="provider_error", retryable=exc.retryable) from None
    ctx.emit(
        "model.call",
        {
            "agent": agent.slug,
            "model": config["model"],
            "provider": provider.slug,
            "simulated": result.simulated,
            "input_tokens": result.input_tokens,
            "output_tokens": result.output_tokens,
            "cost_usd": cost_usd(
                provider, config["model"], result.input_tokens, result.output_tokens
            ),
            "latency_ms": round(result.latency_ms, 1),
            "content": result.content,
        },
    )
    try:
        route = json.loads(result.content)["route"]
    except (ValueError, KeyError, TypeError):
        route = None
    if route not in routes:
        raise StepFailure(
            f"The classifier answered {result.content[:200]!r}, not one of {routes}.",
            code="invalid_output",
            retryable=True,
        )
    return route
