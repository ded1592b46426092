"""Executors of the flow step types: tool, router, parallel, loop and approval."""

from __future__ import annotations

import concurrent.futures
import time
from datetime import timedelta
from typing import Any

from django.db import connection
from django.utils import timezone

from agents.choices import AgentKind
from agents.models import Tool
from agents.tools.base import ToolContext, ToolError, execute_tool
from controlplane import aio, context
from controlplane.choices import Status
from policies.decision import PolicyRequest
from runs.approvals.services import approval_create
from runs.engine.conditions import ConditionError, evaluate
from runs.engine.templating import TemplateError, render
from runs.execution.calls import AgentResult
from runs.execution.executors.agents import invoke, load_agent, make_call, policy_for
from runs.execution.executors.routing import resolve_route
from runs.execution.outcomes import StepCancelled, StepFailure, StepOutcome, StepWaiting
from runs.execution.progress import template_scope
from runs.execution.step_context import StepContext


def tool_step(ctx: StepContext) -> StepOutcome:
    """A direct tool call with the step's arguments (policy-checked, idempotency-keyed)."""
    slug = ctx.step_def.spec["tool"]
    tool = Tool.objects.for_tenant(ctx.run.tenant_id).filter(slug=slug).first()
    if tool is None or tool.status != Status.ACTIVE:
        raise StepFailure(f"Tool {slug!r} is missing or disabled.", code="not_found")
    arguments = ctx.step.input or {}
    ctx.policy().knows_tool(tool)
    decision = policy_for(ctx)(
        PolicyRequest(
            tenant_id=ctx.run.tenant_id,
            action="call_tool",
            tool=tool.slug,
            tool_tags=tuple(tool.tags),
            risk=tool.risk,
            arguments=arguments,
            run_id=ctx.run.pk,
            run_input=ctx.run.input,
        )
    )
    if not decision.allowed:
        raise StepFailure(
            f"Policy refused calling {tool.slug}: {decision.reason}", code="policy_denied"
        )
    key = f"run-{ctx.run.pk}-step-{ctx.step.step_key}-call-{ctx.next_call_index()}"
    started = time.perf_counter()
    tool_ctx = ToolContext(
        tenant=ctx.run.tenant,
        run_context=ctx.run_context,
        agent_memory={},
        idempotency_key=key,
        caller=f"step:{ctx.step.step_key}",
    )
    try:
        result = execute_tool(tool, arguments if isinstance(arguments, dict) else {}, tool_ctx)
    except ToolError as exc:
        ctx.emit(
            "tool.call",
            {
                "tool": tool.slug,
                "arguments": arguments,
                "error": exc.message,
                "code": exc.code,
                "idempotency_key": key,
                "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        raise StepFailure(exc.message, code=exc.code, retryable=exc.retryable) from None
    ctx.emit(
        "tool.call",
        {
            "tool": tool.slug,
            "arguments": arguments,
            "result": result,
            "idempotency_key": key,
            "risk": tool.risk,
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        },
    )
    return StepOutcome(output=result, context_updates=dict(tool_ctx.run_context))


def router_step(ctx: StepContext) -> StepOutcome:
    """Choose one route; the scheduler skips the steps of the other routes."""
    spec = ctx.step_def.spec
    if spec.get("agent"):
        agent, version = load_agent(ctx, spec["agent"])
        if agent.kind != AgentKind.ROUTER:
            raise StepFailure(f"Agent {agent.slug!r} is not a router.", code="wrong_kind")
        route = invoke(make_call(ctx, agent, version, ctx.step.input), ctx).route
    else:
        scope = {
            "input": ctx.step.input,
            "context": ctx.run_context,
            "run": {"input": ctx.run.input},
        }
        route = resolve_route(spec.get("rules", []), scope, spec.get("default_route"))
    ctx.emit(
        "router.decision", {"route": route, "enables": list(ctx.step_def.routes.get(route, ()))}
    )
    return StepOutcome(output={"route": route}, route=route)


def _branches(ctx: StepContext) -> list[tuple[str, str, Any, list[str] | None]]:
    """(name, agent slug, rendered input, allowed tools) for every branch."""
    spec = ctx.step_def.spec
    scope = template_scope(ctx.run)
    try:
        if "for_each" in spec:
            items = render(spec["for_each"], scope)
            if not isinstance(items, list):
                raise StepFailure("for_each must give a list.", code="template_error")
            return [
                (
                    str(index),
                    spec["agent"],
                    render(
                        spec.get("input", "{{ item }}"), {**scope, "item": item, "index": index}
                    ),
                    spec.get("tools"),
                )
                for index, item in enumerate(items)
            ]
        return [
            (
                branch["name"],
                branch["agent"],
                render(branch.get("input", "{{ input }}"), scope),
                branch.get("tools", spec.get("tools")),
            )
            for branch in spec.get("branches", [])
        ]
    except TemplateError as exc:
        raise StepFailure(f"branch input: {exc}", code="template_error") from None


def parallel_step(ctx: StepContext) -> StepOutcome:
    """Fan out to agents concurrently, then merge. Finished branches survive a retry."""
    spec = ctx.step_def.spec
    branches = _branches(ctx)
    done: dict[str, Any] = dict((ctx.step.state or {}).get("branches", {}))
    usage = {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
    current = context.current()
    scope = aio.current_scope() or aio.CancelScope()

    def run_branch(
        name: str, slug: str, branch_input: Any, tools: list[str] | None
    ) -> tuple[str, AgentResult]:
        token = context.set_context(current)
        try:
            with scope.bound():  # the step's cancel and timeout reach its branches' I/O
                agent, version = load_agent(ctx, slug)
                ctx.emit("branch.started", {"branch": name, "agent": slug})
                result = invoke(make_call(ctx, agent, version, branch_input, tools=tools), ctx)
                ctx.emit("branch.finished", {"branch": name, "agent": slug})
                return name, result
        finally:
            context.reset_context(token)
            connection.close()

    todo = [b for b in branches if b[0] not in done]
    workers = max(1, min(int(spec.get("max_concurrency", 4)), len(todo) or 1))
    failures: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_branch, *b) for b in todo]
        for future in concurrent.futures.as_completed(futures):
            try:
                name, result = future.result()
            except StepCancelled:
                raise
            except StepFailure as exc:
                failures.append(exc.message)
                continue
            done[name] = result.output
            for key in ("input_tokens", "output_tokens", "cost_usd"):
                usage[key] += getattr(result, key)
            ctx.save_state({**(ctx.step.state or {}), "branches": done})
    if failures:
        raise StepFailure(
            f"{len(failures)} of {len(branches)} branches failed: " + "; ".join(failures[:3]),
            code="branch_failed",
            retryable=True,
        )
    ordered = [done[name] for name, *_ in branches]
    merge = spec.get("merge", "object")
    if merge == "list":
        output: Any = ordered
    elif isinstance(merge, dict) and merge.get("agent"):
        agent, version = load_agent(ctx, merge["agent"])
        merged = invoke(
            make_call(ctx, agent, version, {name: done[name] for name, *_ in branches}), ctx
        )
        for key in ("input_tokens", "output_tokens", "cost_usd"):
            usage[key] += getattr(merged, key)
        output = merged.output
    else:
        output = {name: done[name] for name, *_ in branches}
    return StepOutcome(output=output, state={"branches": done}, **usage)


def loop_step(ctx: StepContext) -> StepOutcome:
    """Run an agent repeatedly until a condition holds or the maximum is reached."""
    spec = ctx.step_def.spec
    agent, version = load_agent(ctx, spec["agent"])
    maximum = int(spec.get("max_iterations", 5))
    previous: Any = None
    usage = {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
    scope = template_scope(ctx.run)
    for iteration in range(1, maximum + 1):
        ctx.check_cancel()
        try:
            loop_input = render(
                spec.get("input", "{{ input }}"),
                {**scope, "previous": previous, "iteration": iteration},
            )
        except TemplateError as exc:
            raise StepFailure(f"loop input: {exc}", code="template_error") from None
        result = invoke(make_call(ctx, agent, version, loop_input, tools=spec.get("tools")), ctx)
        for key in usage:
            usage[key] += getattr(result, key)
        previous = result.output
        try:
            stop = bool(spec.get("until")) and evaluate(
                spec["until"], {"output": previous, "iteration": iteration, "input": ctx.run.input}
            )
        except ConditionError as exc:
            raise StepFailure(f"until: {exc}", code="condition_error") from None
        ctx.emit("loop.iteration", {"iteration": iteration, "stop": stop})
        if stop:
            return StepOutcome(
                output={"output": previous, "iterations": iteration, "stopped_by": "condition"},
                **usage,
            )
    return StepOutcome(
        output={"output": previous, "iterations": maximum, "stopped_by": "max_iterations"}, **usage
    )


def approval_step(ctx: StepContext) -> StepOutcome:
    """A person approves or denies; a denial fails the step (see on_error)."""
    spec = ctx.step_def.spec
    rendered = ctx.step.input or {}
    timeout = spec.get("timeout_seconds")
    approval = approval_create(
        run=ctx.run,
        step_run=ctx.step,
        kind="approval",
        title=str(rendered.get("title") or f"Approve step {ctx.step.step_key}"),
        details=rendered.get("details")
        if isinstance(rendered.get("details"), dict)
        else {"details": rendered.get("details")},
        required_role=spec.get("approvers", "admin"),
        expires_at=timezone.now() + timedelta(seconds=timeout) if timeout else None,
        on_timeout=spec.get("on_timeout", "deny"),
    )
    raise StepWaiting(approval)
