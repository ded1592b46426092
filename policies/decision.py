"""The single policy decision point, called before every agent invocation, model and tool call.

``decide(request, policy_set)`` answers allow, deny or require_approval with the rule that
made the answer and why. It is pure and fast: a tenant's active policies are compiled
once per policy revision into a ``PolicySet`` whose rules are indexed by action and by
their most selective matcher (tool, tool tag, risk, agent, agent tag, model), each
bucket pre-sorted so that the first matching rule of the merged candidates is the
decision:

* a matching ``deny`` (of an enforced policy) always wins;
* otherwise the highest-priority matching rule wins, and at equal priority
  ``require_approval`` beats ``allow`` (so an exception must be explicit and higher);
* no matching rule: allowed.

Rules of log-only policies are evaluated the same way into ``would_effect`` and never
change the outcome. A condition that fails to evaluate (a missing argument, a type
mismatch) makes a deny or require_approval rule apply and an allow rule not apply:
errors fail closed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import heapq
import json
import threading
from typing import Any

from policies.choices import Effect
from policies.definition import ACTIONS, CompiledRule, compile_rules

_EFFECT_RANK = {Effect.DENY: 0, Effect.REQUIRE_APPROVAL: 1, Effect.ALLOW: 2}


@dataclasses.dataclass(frozen=True)
class Decision:
    """What the decision point said: allow, deny or require_approval, and why."""

    effect: str
    reason: str
    rule: str | None = None
    inputs_hash: str = ""
    policy_id: int | None = None
    policy_slug: str = ""
    version_id: int | None = None
    would_effect: str = ""
    would_rule: str | None = None
    would_policy_id: int | None = None
    would_policy_slug: str = ""
    would_reason: str = ""
    matched: CompiledRule | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def allowed(self) -> bool:
        return self.effect == Effect.ALLOW


@dataclasses.dataclass(frozen=True)
class PolicyRequest:
    """Everything a rule may look at for one call."""

    tenant_id: int
    action: str
    agent: str | None = None
    agent_tags: tuple[str, ...] = ()
    tool: str | None = None
    tool_tags: tuple[str, ...] = ()
    risk: str | None = None
    model: str | None = None
    arguments: Any = None
    run_id: int | None = None
    run_input: Any = None
    spend: dict[str, Any] = dataclasses.field(default_factory=dict)
    step_key: str = ""

    def digest(self) -> str:
        """A hash of what identifies the call (not its spend): the same call, the same hash.

        Used to find the approval a require_approval decision opened when the step runs
        again after the decision.
        """
        data = {
            "tenant": self.tenant_id,
            "action": self.action,
            "agent": self.agent,
            "tool": self.tool,
            "model": self.model,
            "arguments": self.arguments,
            "run": self.run_id,
            "step": self.step_key,
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()

    def recorded(self) -> dict[str, Any]:
        """The inputs kept with a stored decision, enough to replay it against a draft."""
        return {
            "action": self.action,
            "agent": self.agent,
            "agent_tags": list(self.agent_tags),
            "tool": self.tool,
            "tool_tags": list(self.tool_tags),
            "risk": self.risk,
            "model": self.model,
            "arguments": self.arguments,
            "run_input": self.run_input,
            "spend": self.spend,
        }

    @classmethod
    def from_recorded(
        cls, tenant_id: int, data: dict[str, Any], run_id: int | None = None
    ) -> PolicyRequest:
        return cls(
            tenant_id=tenant_id,
            action=data.get("action") or "call_tool",
            agent=data.get("agent"),
            agent_tags=tuple(data.get("agent_tags") or ()),
            tool=data.get("tool"),
            tool_tags=tuple(data.get("tool_tags") or ()),
            risk=data.get("risk"),
            model=data.get("model"),
            arguments=data.get("arguments"),
            run_input=data.get("run_input"),
            spend=data.get("spend") or {},
            run_id=run_id,
        )


def _order(rule: CompiledRule, index: int) -> tuple[int, int, int, int]:
    tier = 0 if rule.effect == Effect.DENY else 1
    return (tier, -rule.priority, _EFFECT_RANK[rule.effect], index)


class _Index:
    """Rules of one action bucketed by their most selective matcher, each bucket sorted."""

    def __init__(self, rules: list[tuple[tuple, CompiledRule]]) -> None:
        buckets: dict[tuple[str, str], list[tuple[tuple, CompiledRule]]] = {}
        for entry in rules:
            for key in self._keys(entry[1]):
                buckets.setdefault(key, []).append(entry)
        self.buckets = {key: sorted(items, key=lambda e: e[0]) for key, items in buckets.items()}

    @staticmethod
    def _keys(rule: CompiledRule) -> list[tuple[str, str]]:
        if rule.tools or rule.tool_tags or rule.risks:
            return (
                [("tool", t) for t in rule.tools]
                + [("tool_tag", t) for t in rule.tool_tags]
                + [("risk", r) for r in rule.risks]
            )
        if rule.agents or rule.agent_tags:
            return [("agent", a) for a in rule.agents] + [("agent_tag", t) for t in rule.agent_tags]
        if rule.models:
            return [("model", m) for m in rule.models]
        return [("any", "")]

    def candidates(self, request: PolicyRequest):
        get = self.buckets.get
        lists = [get(("any", ""))]
        if request.tool:
            lists.append(get(("tool", request.tool)))
            lists.extend(get(("tool_tag", t)) for t in request.tool_tags)
            if request.risk:
                lists.append(get(("risk", request.risk)))
        if request.agent:
            lists.append(get(("agent", request.agent)))
            lists.extend(get(("agent_tag", t)) for t in request.agent_tags)
        if request.model:
            lists.append(get(("model", request.model)))
        lists = [items for items in lists if items]
        if len(lists) == 1:
            return lists[0]
        return heapq.merge(*lists, key=lambda e: e[0])


def _matches(rule: CompiledRule, request: PolicyRequest) -> bool:
    if rule.tools or rule.tool_tags or rule.risks:
        if not request.tool:
            return False
        if not (
            request.tool in rule.tools
            or (request.risk is not None and request.risk in rule.risks)
            or not rule.tool_tags.isdisjoint(request.tool_tags)
        ):
            return False
    if rule.agents or rule.agent_tags:
        if not request.agent:
            return False
        if not (request.agent in rule.agents or not rule.agent_tags.isdisjoint(request.agent_tags)):
            return False
    return not rule.models or request.model in rule.models


def condition_context(request: PolicyRequest, now: dt.datetime | None = None) -> dict[str, Any]:
    """The variables a condition sees (see ``definition.CONDITION_VARIABLES``)."""
    now = now or dt.datetime.now(dt.UTC)
    arguments = request.arguments if isinstance(request.arguments, dict) else {}
    spend = {"tokens": 0, "cost_usd": 0.0, "steps": 0, "wall_seconds": 0.0, **request.spend}
    return {
        "action": request.action,
        "agent": request.agent or "",
        "agent_tags": list(request.agent_tags),
        "tool": request.tool or "",
        "tool_tags": list(request.tool_tags),
        "risk": request.risk or "",
        "model": request.model or "",
        "args": arguments,
        "input": request.run_input if request.run_input is not None else {},
        "spend": spend,
        "now": now,
        "hour": now.hour,
        "weekday": now.weekday(),
    }


@dataclasses.dataclass
class PolicySet:
    """A tenant's applied policies, compiled: rule indexes, rate limits and budgets."""

    revision: int
    enforced: dict[str, _Index]
    log_only: dict[str, _Index]
    rule_count: int = 0
    rate_limits: list[Any] = dataclasses.field(default_factory=list)
    budgets: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)

    @classmethod
    def build(
        cls,
        revision: int,
        rules: list[CompiledRule],
        rate_limits: list[Any] | None = None,
        budgets: dict[str, dict[str, float]] | None = None,
    ) -> PolicySet:
        def index(selected: list[CompiledRule]) -> dict[str, _Index]:
            ordered = [(_order(rule, i), rule) for i, rule in enumerate(selected)]
            return {
                action: _Index([e for e in ordered if not e[1].actions or action in e[1].actions])
                for action in ACTIONS
            }

        return cls(
            revision=revision,
            enforced=index([r for r in rules if not r.log_only]),
            log_only=index([r for r in rules if r.log_only]),
            rule_count=len(rules),
            rate_limits=list(rate_limits or ()),
            budgets=dict(budgets or {}),
        )


EMPTY = PolicySet.build(revision=-1, rules=[])


def _first_match(
    index: _Index, request: PolicyRequest, variables: list[dict[str, Any] | None], now
) -> tuple[CompiledRule | None, str]:
    for _, rule in index.candidates(request):
        if not _matches(rule, request):
            continue
        if rule.program is None:
            return rule, ""
        if variables[0] is None:
            variables[0] = condition_context(request, now)
        scope = variables[0]
        try:
            # only what the program reads: converting values into CEL is most of the cost
            result = rule.program.execute({name: scope[name] for name in rule.variables})
        except Exception as exc:  # the CEL runtime raises KeyError, TypeError, RuntimeError
            if rule.effect == Effect.ALLOW:
                continue
            return rule, f"its condition could not be evaluated ({type(exc).__name__}: {exc})"
        if result is True:
            return rule, ""
    return None, ""


def _describe(rule: CompiledRule, note: str) -> str:
    where = f"rule '{rule.id}' of policy '{rule.policy_slug}'" if rule.policy_slug else rule.id
    verb = {
        Effect.DENY: "denied by",
        Effect.REQUIRE_APPROVAL: "needs approval under",
        Effect.ALLOW: "allowed by",
    }[rule.effect]
    text = f"{verb} {where}"
    if rule.description:
        text += f": {rule.description}"
    if note:
        text += f"; {note}"
    return text[:500]


def decide(
    request: PolicyRequest, policy_set: PolicySet | None = None, *, now: dt.datetime | None = None
) -> Decision:
    """The decision for one call under ``policy_set`` (the tenant's applied policies)."""
    if request.action not in ACTIONS:
        raise ValueError(f"unknown policy action {request.action!r}")
    policy_set = policy_set or EMPTY
    variables: list[dict[str, Any] | None] = [None]
    rule, note = _first_match(policy_set.enforced[request.action], request, variables, now)
    would_rule, would_note = _first_match(
        policy_set.log_only[request.action], request, variables, now
    )
    extra: dict[str, Any] = {}
    if would_rule is not None:
        extra = {
            "would_effect": would_rule.effect,
            "would_rule": would_rule.id,
            "would_policy_id": would_rule.policy_id,
            "would_policy_slug": would_rule.policy_slug,
            "would_reason": _describe(would_rule, would_note),
        }
    digest = request.digest()
    if rule is None:
        return Decision(
            effect=Effect.ALLOW,
            reason="no rule matched: allowed by default",
            inputs_hash=digest,
            **extra,
        )
    return Decision(
        effect=rule.effect,
        reason=_describe(rule, note),
        rule=rule.id,
        inputs_hash=digest,
        policy_id=rule.policy_id,
        policy_slug=rule.policy_slug,
        version_id=rule.version_id,
        matched=rule,
        **extra,
    )


# The per-process cache of compiled policy sets --------------------------------------------------

_lock = threading.Lock()
_cache: dict[int, PolicySet] = {}


def load_policy_set(tenant_id: int, revision: int) -> PolicySet:
    """Compile the tenant's applied policies (database read); see ``policy_set_for``."""
    from policies.limits_config import merge_budgets, rate_limits_of
    from policies.models import Policy

    rules: list[CompiledRule] = []
    definitions = []
    policies = (
        Policy.objects.for_tenant(tenant_id)
        .filter(active_version__isnull=False)
        .select_related("active_version")
        .order_by("slug")
    )
    for policy in policies:
        version = policy.active_version
        log_only = policy.mode == "log_only"
        rules.extend(
            compile_rules(
                version.definition,
                policy_id=policy.pk,
                policy_slug=policy.slug,
                version_id=version.pk,
                log_only=log_only,
            )
        )
        if not log_only:
            definitions.append(version.definition)
    return PolicySet.build(
        revision=revision,
        rules=rules,
        rate_limits=rate_limits_of(definitions),
        budgets=merge_budgets(definitions),
    )


def policy_set_for(tenant: Any) -> PolicySet:
    """The compiled policy set of ``tenant`` at its current ``policy_revision`` (cached).

    The tenant row carries the revision, so a worker that loaded the run's tenant knows
    whether its compiled copy is current without another query.
    """
    revision = tenant.policy_revision
    cached = _cache.get(tenant.pk)
    if cached is not None and cached.revision == revision:
        return cached
    compiled = load_policy_set(tenant.pk, revision)
    with _lock:
        current = _cache.get(tenant.pk)
        if current is None or current.revision <= revision:
            _cache[tenant.pk] = compiled
    return compiled


def clear_cache() -> None:
    with _lock:
        _cache.clear()
