"""Policies (versions, activation, mode, simulation, stored decisions)."""

from __future__ import annotations

import dataclasses
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from controlplane import context
from controlplane.audit.services import audit_record, snapshot
from controlplane.tenancy.models import Tenant
from policies.choices import Effect, PolicyMode
from policies.definition import DEFAULT_DEFINITION, validate_definition, validate_names
from policies.models import Policy, PolicyDecision, PolicyVersion

# Policies ------------------------------------------------------------------------------------

POLICY_FIELDS = ["slug", "name", "description", "mode"]


def validate_policy_definition(definition: Any, *, tenant: Any = None) -> None:
    """Raise a ValidationError listing every problem, each under ``definition.<path>``.

    With ``tenant``, agent, tool and model names must exist in it (in either mode: a
    log-only trial of a rule that can never match would preview nothing), so a typo is
    refused with the close names instead of saving a rule that never fires.
    """
    errors = validate_definition(definition)
    if not errors and tenant is not None:
        from policies.selectors import known_names

        errors = validate_names(definition, known_names(tenant))
    if errors:
        grouped: dict[str, list[str]] = {}
        for error in errors:
            key = f"definition.{error.path}" if error.path else "definition"
            grouped.setdefault(key, []).append(error.message)
        raise ValidationError(grouped)


def _bump_revision(tenant_id: int) -> None:
    """Workers compare this with their compiled copy: the next decision recompiles."""
    Tenant.objects.filter(pk=tenant_id).update(policy_revision=F("policy_revision") + 1)


def _unique_policy_slug(tenant: Any, slug: str, exclude_pk: Any = None) -> None:
    qs = Policy.objects.for_tenant(tenant).filter(slug=slug)
    if exclude_pk:
        qs = qs.exclude(pk=exclude_pk)
    if qs.exists():
        raise ValidationError({"slug": f"Policy {slug!r} already exists in this tenant."})


def _add_version(policy: Policy, definition: dict, note: str, created_by: Any) -> PolicyVersion:
    last = PolicyVersion.objects.filter(policy=policy).aggregate(n=Max("number"))["n"] or 0
    return PolicyVersion.objects.create(
        tenant_id=policy.tenant_id,
        policy=policy,
        number=last + 1,
        definition=definition,
        note=note[:300],
        created_by=created_by,
    )


@transaction.atomic
def policy_create(
    *,
    tenant: Any,
    slug: str,
    name: str,
    definition: dict,
    description: str = "",
    mode: str = PolicyMode.ENFORCE,
    note: str = "",
    activate: bool = True,
    created_by: Any = None,
    is_default: bool = False,
) -> Policy:
    """Create a policy and its validated first version (applied at once unless ``activate``
    is False, when it stays a draft to simulate first)."""
    _unique_policy_slug(tenant, slug)
    policy = Policy(
        tenant=tenant,
        slug=slug,
        name=name,
        description=description,
        mode=mode,
        is_default=is_default,
    )
    policy.full_clean(
        exclude=["tenant", "active_version"], validate_unique=False, validate_constraints=False
    )
    validate_policy_definition(definition, tenant=tenant)
    policy.save()
    version = _add_version(policy, definition, note or "first version", created_by)
    if activate:
        _activate(policy, version)
    audit_record(
        action="policy.create",
        target=policy,
        tenant=tenant,
        after={
            **snapshot(policy, POLICY_FIELDS),
            "version": version.number,
            "active": activate,
            "rules": len(definition.get("rules") or ()),
        },
    )
    return policy


def _activate(policy: Policy, version: PolicyVersion) -> None:
    now = timezone.now()
    PolicyVersion.objects.filter(pk=version.pk).update(activated_at=now)
    version.activated_at = now
    Policy.objects.filter(pk=policy.pk).update(active_version=version, updated_at=now)
    policy.active_version = version
    _bump_revision(policy.tenant_id)


@transaction.atomic
def policy_save_version(
    *, policy: Policy, definition: dict, note: str = "", created_by: Any = None
) -> PolicyVersion:
    """Validate and store a new immutable version as a draft (not applied until activated)."""
    policy = Policy.objects.select_for_update().get(pk=policy.pk)
    validate_policy_definition(definition, tenant=policy.tenant_id)
    version = _add_version(policy, definition, note, created_by)
    audit_record(
        action="policy.version",
        target=policy,
        tenant=policy.tenant,
        after={"version": version.number, "rules": len(definition.get("rules") or ())},
        metadata={"note": note[:300]},
    )
    return version


@transaction.atomic
def policy_activate(*, policy: Policy, version: PolicyVersion) -> Policy:
    """Apply ``version`` (a newer draft, or an older version to roll back to)."""
    policy = (
        Policy.objects.select_for_update(of=("self",))
        .select_related("active_version")
        .get(pk=policy.pk)
    )
    if version.policy_id != policy.pk:
        raise ValidationError({"version": "That version belongs to another policy."})
    previous = policy.active_version
    if previous is not None and previous.pk == version.pk:
        raise ValidationError({"version": f"Version {version.number} is already active."})
    _activate(policy, version)
    audit_record(
        action="policy.activate",
        target=policy,
        tenant=policy.tenant,
        before={"version": previous.number if previous else None},
        after={"version": version.number},
    )
    return policy


@transaction.atomic
def policy_set_mode(*, policy: Policy, mode: str) -> Policy:
    """Switch between enforce and log_only; applies from the next decision."""
    if mode not in PolicyMode.values:
        raise ValidationError({"mode": f"Use one of: {', '.join(PolicyMode.values)}."})
    policy = Policy.objects.select_for_update().get(pk=policy.pk)
    if policy.mode == mode:
        return policy
    before = policy.mode
    Policy.objects.filter(pk=policy.pk).update(mode=mode, updated_at=timezone.now())
    policy.mode = mode
    _bump_revision(policy.tenant_id)
    audit_record(
        action="policy.mode",
        target=policy,
        tenant=policy.tenant,
        before={"mode": before},
        after={"mode": mode},
    )
    return policy


@transaction.atomic
def policy_update(*, policy: Policy, **changes: Any) -> Policy:
    """Edit name, description or slug (rules change through versions, mode by its switch)."""
    policy = Policy.objects.select_for_update().get(pk=policy.pk)
    before = snapshot(policy, POLICY_FIELDS)
    if "mode" in changes:
        mode = changes.pop("mode")
        if mode != policy.mode:
            policy_set_mode(policy=policy, mode=mode)
            policy.mode = mode
    for field, value in changes.items():
        if field == "slug" and value != policy.slug:
            _unique_policy_slug(policy.tenant_id, value, policy.pk)
        setattr(policy, field, value)
    policy.full_clean(
        exclude=["tenant", "active_version"], validate_unique=False, validate_constraints=False
    )
    policy.save()
    after = snapshot(policy, POLICY_FIELDS)
    if after != before:
        audit_record(
            action="policy.update", target=policy, tenant=policy.tenant, before=before, after=after
        )
    return policy


DEFAULT_POLICY_KEPT = (
    "The default policy cannot be deleted: a tenant always keeps it. To stop it acting, "
    "switch it to log only; to change what it does, publish and activate a new version."
)


@transaction.atomic
def policy_delete(*, policy: Policy) -> None:
    """Delete a policy and its versions; its rules stop applying at once.

    The tenant's default policy is refused (ValidationError): switch it to log only instead.
    """
    from controlplane.rbac.grants import remove_object_grants

    if policy.is_default:
        raise ValidationError(DEFAULT_POLICY_KEPT)
    tenant = policy.tenant
    before = {**snapshot(policy, POLICY_FIELDS), "id": policy.pk}
    remove_object_grants(policy)
    audit_record(action="policy.delete", target=policy, tenant=tenant, before=before)
    policy.delete()
    _bump_revision(tenant.pk)


def ensure_default_policy(tenant: Any) -> Policy | None:
    """Give a tenant the default policy (destructive tools need approval) if it has none."""
    if Policy.objects.for_tenant(tenant).filter(is_default=True).exists():
        return None
    with context.tenant_context(tenant):
        return policy_create(
            tenant=tenant,
            slug="default",
            name="Default policy",
            description="Calls of destructive tools by agents wait for an admin's approval; "
            "everything else is allowed. Edit it, or add policies of your own.",
            definition=DEFAULT_DEFINITION,
            note="created with the tenant",
            is_default=True,
        )


def policy_version_diff(older: PolicyVersion, newer: PolicyVersion) -> list[dict[str, Any]]:
    """Leaf changes between two versions, rules and rate limits keyed by their id."""
    from agents.selectors import json_diff

    def keyed(definition: dict) -> dict:
        out = dict(definition)
        for name in ("rules", "rate_limits"):
            if isinstance(out.get(name), list):
                out[name] = {str(item.get("id")): item for item in out[name]}
        return out

    return json_diff(keyed(older.definition), keyed(newer.definition))


# Decisions -----------------------------------------------------------------------------------


def record_decision(
    *, tenant: Any, run_id: int | None, step_key: str, request: Any, decision: Any
) -> PolicyDecision:
    """Store one decision with its inputs; a refusal (or a log-only would-refuse) is audited."""
    from runs.events import clip

    row = PolicyDecision.objects.for_tenant(tenant).create(
        tenant_id=tenant.pk,
        run_id=run_id,
        step_key=step_key[:100],
        action=request.action,
        agent=(request.agent or "")[:50],
        tool=(request.tool or "")[:50],
        model=(request.model or "")[:200],
        effect=decision.effect,
        would_effect=decision.would_effect,
        would_policy_id=decision.would_policy_id,
        would_rule=(decision.would_rule or "")[:100],
        would_reason=decision.would_reason[:500],
        policy_id=decision.policy_id,
        policy_version_id=decision.version_id,
        rule=(decision.rule or "")[:100],
        reason=decision.reason[:500],
        inputs_hash=decision.inputs_hash,
        inputs=clip(request.recorded()),
    )
    if decision.effect != Effect.ALLOW or decision.would_effect in (
        Effect.DENY,
        Effect.REQUIRE_APPROVAL,
    ):
        with context.tenant_context(tenant):
            audit_record(
                action=f"policy.{decision.effect}",
                target=row,
                target_name=f"{request.action} {request.tool or request.agent or request.model}",
                tenant=tenant,
                after={
                    "effect": decision.effect,
                    "would_effect": decision.would_effect,
                    "would_policy": decision.would_policy_slug,
                    "would_rule": decision.would_rule,
                    "rule": decision.rule,
                    "policy": decision.policy_slug,
                    "reason": decision.reason,
                    "run": run_id,
                    "step": step_key,
                    "inputs_hash": decision.inputs_hash,
                },
            )
    return row


# Simulation ----------------------------------------------------------------------------------


@dataclasses.dataclass
class SimulationResult:
    """How a draft would change recorded decisions: counts by (before, after) and the changes."""

    version: int
    replayed: int
    changed: int
    transitions: dict[str, int]
    changes: list[dict[str, Any]]


def simulate_version(
    *, policy: Policy, version: PolicyVersion, limit: int = 500, mode: str | None = None
) -> SimulationResult:
    """Replay the inputs of the tenant's last ``limit`` decisions under the applied policies
    (before) and under the same set with ``version`` applied to ``policy`` (after).

    ``mode`` is the mode the draft would have (default: the policy's current mode), so a
    log-only policy previews what it would do once enforced with ``mode="enforce"``.
    Each replay uses the recorded time, so time conditions see the moment of the call.
    """
    from policies.decision import PolicyRequest, PolicySet, decide, load_policy_set
    from policies.definition import compile_rules

    limit = max(1, min(int(limit), 5000))
    tenant_id = policy.tenant_id
    before_set = load_policy_set(tenant_id, revision=-1)
    log_only = (mode or policy.mode) == PolicyMode.LOG_ONLY
    others = [
        r
        for index in (before_set.enforced, before_set.log_only)
        for r in _all_rules(index)
        if r.policy_id != policy.pk
    ]
    candidate = compile_rules(
        version.definition,
        policy_id=policy.pk,
        policy_slug=policy.slug,
        version_id=version.pk,
        log_only=log_only,
    )
    after_set = PolicySet.build(revision=-1, rules=others + candidate)
    rows = list(PolicyDecision.objects.for_tenant(tenant_id).order_by("-id")[:limit])
    transitions: dict[str, int] = {}
    changes = []
    for row in rows:
        request = PolicyRequest.from_recorded(tenant_id, row.inputs, run_id=row.run_id)
        before = decide(request, before_set, now=row.created_at)
        after = decide(request, after_set, now=row.created_at)
        key = f"{before.effect}->{after.effect}"
        transitions[key] = transitions.get(key, 0) + 1
        if before.effect != after.effect:
            changes.append(
                {
                    "decision": row.pk,
                    "run": row.run_id,
                    "step": row.step_key,
                    "action": row.action,
                    "agent": row.agent,
                    "tool": row.tool,
                    "model": row.model,
                    "arguments": row.inputs.get("arguments"),
                    "recorded": row.effect,
                    "before": before.effect,
                    "after": after.effect,
                    "rule": after.rule or before.rule,
                    "reason": after.reason,
                    "at": row.created_at.isoformat(),
                }
            )
    return SimulationResult(
        version=version.number,
        replayed=len(rows),
        changed=len(changes),
        transitions=dict(sorted(transitions.items())),
        changes=changes,
    )


def _all_rules(index_by_action: dict[str, Any]) -> list[Any]:
    seen: dict[tuple, Any] = {}
    for index in index_by_action.values():
        for items in index.buckets.values():
            for order, rule in items:
                seen.setdefault((rule.policy_id, rule.id), (order, rule))
    return [rule for _, rule in sorted(seen.values(), key=lambda e: e[0][3])]
