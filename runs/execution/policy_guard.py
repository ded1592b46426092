"""The engine's policy guard: decisions, approvals, rate limits and budgets inside a step.

``claim`` gives each executed step's context one ``StepPolicy`` (made on first use); it
reads the step's ``StepContext`` and stops the step with ``StepWaiting`` or
``BudgetExceeded``, so it lives with the execution, above ``policies`` (whose decision
point, budgets and rate limits it applies). ``check`` is what the engine's
call sites call before every agent invocation, model call and tool call: it applies the
rate limits, asks the decision point, turns a ``require_approval`` into an approval
request (or finds the decision a person already made on the same call), stores the
decision, audits refusals and records a ``policy.decision`` event in the run's timeline.
``before_model`` / ``after_model`` reserve and reconcile budget spend around each model
call; ``step_started`` counts the step against the step and wall-time budgets.

Token estimate before a model call (what ``before_model`` reserves): the request's input,
about one token per four characters of the JSON sent (messages and tool schemas, see
``runs.execution.conversation.estimate_input_tokens``), plus its output: the agent's ``max_tokens``
capped at ``OUTPUT_ESTIMATE_CAP`` (the cap when unset), since answers rarely use their
whole allowance. After the call the estimate is replaced by the actual usage; when that
takes the spend past a soft limit nobody agreed to pass, the step asks at once (see
``after_model``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import time
from typing import Any

from django.db import transaction
from django.utils import timezone

from agents.models import Tool
from agents.providers.base import cost_usd
from agents.tools.builtin import effective_risk
from policies.budgets import (
    Budget,
    Spend,
    day_scope,
    reconcile,
    release,
    reserve,
    run_scope,
    soft_crossed,
)
from policies.choices import Effect
from policies.decision import Decision, PolicyRequest, PolicySet, decide, policy_set_for
from policies.decisions import audit_decision, decision_row, is_audited
from policies.models import Policy
from policies.rate_limits import check_rate_limits
from runs.approvals.choices import ApprovalKind, ApprovalStatus
from runs.approvals.models import ApprovalRequest
from runs.approvals.services import approval_create
from runs.execution.outcomes import StepFailure, StepWaiting

RATE_LIMIT_WAIT_SECONDS = 10.0  # a model call waits this long at most for its rate limit
# Output tokens reserved at most: an agent turn (a tool call, a short answer) is rarely
# longer, and reserving all of max_tokens stopped runs that were far inside their budget.
OUTPUT_ESTIMATE_CAP = 256


class BudgetExceeded(StepFailure):
    """A hard budget was reached: the run stops (whatever the step's on_error says)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"Budget exceeded: {reason}", code="budget_exceeded")
        self.reason = reason


def _budgets_for(policy_set: PolicySet, tenant_id: int, run_id: int) -> dict[str, Any]:

    out: dict[str, Any] = {}
    names = {"run": run_scope(run_id), "tenant_daily": day_scope()}
    for key, scope in names.items():
        limits = policy_set.budgets.get(key)
        if limits:
            fields = {f.name for f in dataclasses.fields(Budget)}
            out[scope] = Budget(**{k: v for k, v in limits.items() if k in fields})
    return out


class StepPolicy:
    """Policy enforcement for one executing step (see the module docstring)."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.run = ctx.run
        self.tenant = ctx.run.tenant
        self.policy_set = policy_set_for(self.tenant)
        self._spend: dict[str, Any] | None = None
        self._tools: dict[str, tuple[str, str] | None] = {}  # slug -> (kind, builtin)

    def knows_tool(self, tool: Tool) -> None:
        """The caller has the tool's row in hand: no second read to find its floor."""
        self._tools[tool.slug] = (tool.kind, tool.builtin)

    # -- spend ---------------------------------------------------------------------------------

    def spend(self) -> dict[str, Any]:
        """The run's spend when the step started (tokens, cost, steps, wall time)."""
        if self._spend is None:
            run = self.run
            started = run.started_at or run.created_at
            self._spend = {
                "tokens": int(run.input_tokens + run.output_tokens),
                "cost_usd": float(run.cost_usd),
                "steps": int(run.step_count),  # steps created so far (kept on the run row)
                "wall_seconds": round((timezone.now() - started).total_seconds(), 3),
            }
        return self._spend

    @functools.cached_property
    def _soft_acknowledged(self) -> set[str]:
        """Soft budget limits people agreed to pass in this run (decided before this step
        started: a decision requeues the step, so it cannot change while the step runs)."""

        return set(
            ApprovalRequest.objects.for_tenant(self.tenant)
            .filter(run_id=self.run.pk, kind=ApprovalKind.POLICY, rule__startswith="budget:")
            .filter(status=ApprovalStatus.APPROVED)
            .values_list("rule", flat=True)
        )

    def _budget_wait(self, reason: str, key: str) -> None:
        """A soft budget limit was crossed: wait for a person (or go on if one agreed)."""

        refused = (
            ApprovalRequest.objects.for_tenant(self.tenant)
            .filter(
                run_id=self.run.pk,
                kind=ApprovalKind.POLICY,
                rule=key,
                status__in=(ApprovalStatus.DENIED, ApprovalStatus.EXPIRED),
            )
            .select_related("decided_by")
            .order_by("-id")
            .first()
        )
        if refused is not None:
            # a person said no (or nobody answered in time): stop, instead of asking forever
            who = refused.decided_by.get_username() if refused.decided_by else "expiry"
            raise BudgetExceeded(f"{reason.split(';')[0]}; {who} refused to go past it")
        approval = approval_create(
            run=self.run,
            step_run=self.ctx.step,
            kind=ApprovalKind.POLICY,
            title=f"Budget: {reason}"[:300],
            details={"budget": key, "reason": reason},
            required_role="admin",
            rule=key,
            inputs_hash=key,
        )
        raise StepWaiting(approval)

    def _reserve(self, estimate: Any) -> Any:

        budgets = _budgets_for(self.policy_set, self.tenant.pk, self.run.pk)
        if not budgets:
            return None
        acknowledged = self._soft_acknowledged
        check = reserve(
            self.tenant.pk,
            estimate,
            budgets,
            wall_seconds=self.spend()["wall_seconds"],
            soft_acknowledged={k.removeprefix("budget:") for k in acknowledged},
        )
        if check.ok:
            return check.reservation
        if check.hard:
            raise BudgetExceeded(check.reason)
        self._budget_wait(check.reason, f"budget:{check.scope}:{check.dimension}")
        return None

    def step_started(self) -> None:
        """Count the step against the budgets (raises BudgetExceeded or StepWaiting)."""

        reservation = self._reserve(Spend(steps=1))
        if reservation is not None:
            reconcile(reservation, Spend(steps=1))

    def before_model(
        self, *, provider: Any, model: str, max_tokens: int | None, input_tokens: int = 0
    ) -> Any:
        """Reserve an estimate of the next model call's spend (``input_tokens``, the
        request's estimated size, plus the capped output; see the module docstring);
        None when no budget applies."""

        if not self.policy_set.budgets:
            return None
        output = min(int(max_tokens or OUTPUT_ESTIMATE_CAP), OUTPUT_ESTIMATE_CAP)
        estimate_input = max(0, int(input_tokens))
        estimate_cost = cost_usd(provider, model, estimate_input, output) if provider else 0.0
        return self._reserve(Spend(tokens=estimate_input + output, cost_usd=estimate_cost))

    def after_model(self, reservation: Any, *, tokens: int, cost: float) -> None:
        """Replace the estimate with the call's actual spend; if that takes the spend past a
        soft limit nobody agreed to pass, open the approval now and pause the step
        (StepWaiting). Like every approval asked for in the middle of a step, approving it
        runs the step again, with the limit acknowledged."""

        if reservation is None:
            return
        reconcile(reservation, Spend(tokens=int(tokens), cost_usd=float(cost)))
        budgets = _budgets_for(self.policy_set, self.tenant.pk, self.run.pk)
        check = soft_crossed(
            self.tenant.pk,
            budgets,
            soft_acknowledged={k.removeprefix("budget:") for k in self._soft_acknowledged},
        )
        if check is not None:
            self._budget_wait(check.reason, f"budget:{check.scope}:{check.dimension}")

    def model_failed(self, reservation: Any) -> None:

        if reservation is not None:
            release(reservation)

    # -- rate limits ---------------------------------------------------------------------------

    def _rate_limited(self, request: PolicyRequest) -> Decision | None:
        if not self.policy_set.rate_limits or request.action not in ("call_model", "call_tool"):
            return None

        waited = 0.0
        while True:
            verdict = check_rate_limits(
                self.tenant.pk,
                self.policy_set.rate_limits,
                agent=request.agent,
                tool=request.tool if request.action == "call_tool" else None,
            )
            if verdict.allowed:
                return None
            pause = verdict.retry_after
            remaining = None if self.ctx.deadline is None else self.ctx.deadline - time.monotonic()
            fits = remaining is None or pause < remaining - 1
            if (
                request.action == "call_model"
                and waited + pause <= RATE_LIMIT_WAIT_SECONDS
                and fits
            ):
                time.sleep(pause)
                waited += pause
                continue
            return Decision(
                effect=Effect.DENY,
                reason=f"rate limit '{verdict.limit_id}' reached: retry after "
                f"{verdict.retry_after:.1f} s",
                rule=f"rate:{verdict.limit_id}",
                inputs_hash=request.digest(),
            )

    # -- decisions -----------------------------------------------------------------------------

    def check(self, request: PolicyRequest) -> Decision:
        """Decide one call; see the module docstring. May raise StepWaiting."""
        request = dataclasses.replace(
            request,
            spend=self.spend(),
            step_key=self.ctx.step.step_key,
            risk=self._effective_risk(request),
        )
        decision = self._rate_limited(request) or decide(request, self.policy_set)
        if decision.effect == Effect.REQUIRE_APPROVAL:
            decision = self._with_approval(request, decision)
        self._record(request, decision)
        if decision.effect == Effect.REQUIRE_APPROVAL:
            self._wait_for_approval(request, decision)
        return decision

    def _effective_risk(self, request: PolicyRequest) -> str | None:
        """The risk of what the call does: a tool registered on a built-in below the
        built-in's floor (a row older than the check at registration) is treated at the floor."""
        if request.action != "call_tool" or not request.tool:
            return request.risk
        if request.tool not in self._tools:
            self._tools[request.tool] = (
                Tool.objects.for_tenant(self.tenant)
                .filter(slug=request.tool)
                .values_list("kind", "builtin")
                .first()
            )
        found = self._tools[request.tool]
        if found is None:
            return request.risk

        raised = effective_risk(kind=found[0], builtin=found[1], risk=request.risk or "read")
        return raised if raised != (request.risk or "read") else request.risk

    def _with_approval(self, request: PolicyRequest, decision: Decision) -> Decision:
        """The decision a person made on this very call in this step, if any."""

        approval = (
            ApprovalRequest.objects.for_tenant(self.tenant)
            .filter(
                step_run=self.ctx.step,
                kind=ApprovalKind.POLICY,
                inputs_hash=decision.inputs_hash,
            )
            .exclude(status__in=(ApprovalStatus.PENDING, ApprovalStatus.CANCELLED))
            .select_related("decided_by")
            .order_by("-id")
            .first()
        )
        if approval is None:
            return decision
        approved = approval.status == ApprovalStatus.APPROVED or (
            approval.status == ApprovalStatus.EXPIRED and approval.on_timeout == "approve"
        )
        who = approval.decided_by.get_username() if approval.decided_by else "expiry"
        note = f" ({approval.comment})" if approval.comment else ""
        if approved:
            reason = f"approved by {who}{note} (approval {approval.pk}); {decision.reason}"
            effect = Effect.ALLOW
        else:
            verb = "expired" if approval.status == ApprovalStatus.EXPIRED else f"denied by {who}"
            reason = f"approval {approval.pk} {verb}{note}; {decision.reason}"
            effect = Effect.DENY
        return dataclasses.replace(decision, effect=effect, reason=reason[:500])

    def _wait_for_approval(self, request: PolicyRequest, decision: Decision) -> None:

        rule = decision.matched
        approvers = rule.approvers if rule is not None else None
        expires_at = None
        if approvers is not None and approvers.expires_after_minutes:
            expires_at = timezone.now() + dt.timedelta(minutes=approvers.expires_after_minutes)
        what = {
            "call_tool": f"call tool '{request.tool}'",
            "call_model": f"call model '{request.model}'",
            "invoke_agent": f"run agent '{request.agent}'",
            "delegate": f"delegate to agent '{request.agent}'",
        }[request.action]
        policy = (
            Policy.objects.for_tenant(self.tenant).filter(pk=decision.policy_id).first()
            if decision.policy_id
            else None
        )
        approval = approval_create(
            run=self.run,
            step_run=self.ctx.step,
            kind=ApprovalKind.POLICY,
            title=f"Approve: {request.agent or 'the run'} wants to {what}"[:300],
            details={
                "action": request.action,
                "agent": request.agent,
                "tool": request.tool,
                "model": request.model,
                "arguments": request.arguments,
                "reason": decision.reason,
                "rule": decision.rule,
                "policy": decision.policy_slug,
            },
            required_role=approvers.role if approvers else "admin",
            required_approvals=approvers.quorum if approvers else 1,
            expires_at=expires_at,
            on_timeout=approvers.on_expiry if approvers else "deny",
            policy=policy,
            rule=decision.rule or "",
            inputs_hash=decision.inputs_hash,
        )
        raise StepWaiting(approval)

    def _record(self, request: PolicyRequest, decision: Decision) -> None:
        """The decision's row and its run event; with its audit entry when audited."""
        row = decision_row(
            tenant=self.tenant,
            run_id=self.run.pk,
            step_key=self.ctx.step.step_key,
            request=request,
            decision=decision,
        )
        payload = {
            "action": request.action,
            "agent": request.agent,
            "tool": request.tool,
            "model": request.model,
            "effect": decision.effect,
            "reason": decision.reason,
            "rule": decision.rule,
            "policy": decision.policy_slug,
            "would_effect": decision.would_effect,
            "would_policy": decision.would_policy_slug,
            "would_rule": decision.would_rule,
            "would_reason": decision.would_reason,
            "inputs_hash": decision.inputs_hash,
        }
        if not is_audited(decision):  # the common case: one statement, no transaction
            self.ctx.emit("policy.decision", payload, also=row)
            return
        with transaction.atomic():  # one commit for the decision row, its event and its audit
            # the event takes the run's row first, the audit chain last: see lock_run
            self.ctx.emit("policy.decision", payload, also=row)
            audit_decision(row, tenant=self.tenant, request=request, decision=decision)
