"""Policies and their immutable versions: create, new versions, activation and rollback, mode,
edits, delete, and the tenant's default policy. Stored decisions are in ``policies.decisions``,
simulation in ``policies.simulation``."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from agents.selectors import json_diff
from controlplane import context
from controlplane.entities import Entity, add_version, raise_at_paths
from controlplane.rbac.grants import remove_object_grants
from controlplane.tenancy.models import Tenant
from policies.choices import PolicyMode
from policies.definition import DEFAULT_DEFINITION, validate_definition, validate_names
from policies.models import Policy, PolicyVersion
from policies.selectors import known_names

# Policies ------------------------------------------------------------------------------------

POLICIES = Entity(
    Policy,
    "policy",
    fields=("slug", "name", "description", "mode"),
    clean_exclude=("active_version",),
)


def validate_policy_definition(definition: Any, *, tenant: Any = None) -> None:
    """Raise a ValidationError listing every problem, each under ``definition.<path>``.

    With ``tenant``, agent, tool and model names must exist in it (in either mode: a
    log-only trial of a rule that can never match would preview nothing), so a typo is
    refused with the close names instead of saving a rule that never fires.
    """
    errors = validate_definition(definition)
    if not errors and tenant is not None:
        errors = validate_names(definition, known_names(tenant))
    raise_at_paths(errors, under="definition")


def _bump_revision(tenant_id: int) -> None:
    """Workers compare this with their compiled copy: the next decision recompiles."""
    Tenant.objects.filter(pk=tenant_id).update(policy_revision=F("policy_revision") + 1)


def _add_version(policy: Policy, definition: dict, note: str, created_by: Any) -> PolicyVersion:
    return add_version(
        PolicyVersion,
        owner_field="policy",
        owner=policy,
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
    policy = Policy(
        tenant=tenant,
        slug=slug,
        name=name,
        description=description,
        mode=mode,
        is_default=is_default,
    )
    POLICIES.check_slug(policy, slug)
    POLICIES.clean(policy)
    validate_policy_definition(definition, tenant=tenant)
    policy.save()
    version = _add_version(policy, definition, note or "first version", created_by)
    if activate:
        _activate(policy, version)
    POLICIES.record(
        "create",
        policy,
        after=POLICIES.snapshot(
            policy,
            version=version.number,
            active=activate,
            rules=len(definition.get("rules") or ()),
        ),
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
    POLICIES.record(
        "version",
        policy,
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
    POLICIES.record(
        "activate",
        policy,
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
    POLICIES.record("mode", policy, before={"mode": before}, after={"mode": mode})
    return policy


def _switch_mode(policy: Policy, changes: dict[str, Any]) -> None:
    """An edit's mode goes through ``policy_set_mode`` (its own audit row, a recompile)."""
    if "mode" in changes:
        mode = changes.pop("mode")
        if mode != policy.mode:
            policy_set_mode(policy=policy, mode=mode)
            policy.mode = mode


@transaction.atomic
def policy_update(*, policy: Policy, **changes: Any) -> Policy:
    """Edit name, description or slug (rules change through versions, mode by its switch)."""
    return POLICIES.update(policy, changes, prepare=_switch_mode, audit_unchanged=False)


DEFAULT_POLICY_KEPT = (
    "The default policy cannot be deleted: a tenant always keeps it. To stop it acting, "
    "switch it to log only; to change what it does, publish and activate a new version."
)


@transaction.atomic
def policy_delete(*, policy: Policy) -> None:
    """Delete a policy and its versions; its rules stop applying at once.

    The tenant's default policy is refused (ValidationError): switch it to log only instead.
    """
    if policy.is_default:
        raise ValidationError(DEFAULT_POLICY_KEPT)
    tenant_id = policy.tenant_id
    remove_object_grants(policy)
    POLICIES.delete(policy, before=POLICIES.snapshot(policy, id=policy.pk))
    _bump_revision(tenant_id)


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

    def keyed(definition: dict) -> dict:
        out = dict(definition)
        for name in ("rules", "rate_limits"):
            if isinstance(out.get(name), list):
                out[name] = {str(item.get("id")): item for item in out[name]}
        return out

    return json_diff(keyed(older.definition), keyed(newer.definition))
