"""Per-object grants (the second RBAC layer) through django-guardian.

The agents, policies and runs apps declare object permissions such as
``agents.use_agent`` or ``policies.approve_policy`` and grant them here. A grant
never crosses tenants: the object's tenant must be one the user belongs to.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from guardian.shortcuts import assign_perm, get_objects_for_user, get_users_with_perms, remove_perm

from controlplane.tenancy.models import Membership


class CrossTenantGrant(ValueError):
    """A grant was attempted for a user who is not a member of the object's tenant."""


def grant_object_perm(*, user: Any, perm: str, obj: models.Model) -> None:
    """Give ``user`` ``perm`` on ``obj``; the user must belong to ``obj.tenant``."""
    if not Membership.objects.unscoped().filter(tenant_id=obj.tenant_id, user=user).exists():
        raise CrossTenantGrant(f"{user} is not a member of the tenant that owns {obj}.")
    assign_perm(perm, user, obj)


def revoke_object_perm(*, user: Any, perm: str, obj: models.Model) -> None:
    remove_perm(perm, user, obj)


def has_object_perm(user: Any, perm: str, obj: models.Model) -> bool:
    """Guardian's check only (no role): does ``user`` hold ``perm`` on this very object?"""
    from guardian.core import ObjectPermissionChecker

    return ObjectPermissionChecker(user).has_perm(perm.split(".", 1)[-1], obj)


def objects_granted(user: Any, perm: str, queryset: models.QuerySet) -> models.QuerySet:
    """The subset of ``queryset`` on which ``user`` holds ``perm`` by object grant."""
    return get_objects_for_user(user, perm, klass=queryset, accept_global_perms=False)


def users_granted(obj: models.Model) -> dict[Any, list[str]]:
    return get_users_with_perms(obj, attach_perms=True, with_superusers=False)


def remove_object_grants(obj: models.Model) -> None:
    """Delete every guardian grant on ``obj``; called when the object is deleted."""
    from django.contrib.contenttypes.models import ContentType
    from guardian.models import GroupObjectPermission, UserObjectPermission

    ct = ContentType.objects.get_for_model(obj)
    UserObjectPermission.objects.filter(content_type=ct, object_pk=str(obj.pk)).delete()
    GroupObjectPermission.objects.filter(content_type=ct, object_pk=str(obj.pk)).delete()


def object_permission_grant(*, user: Any, perm: str, obj: models.Model) -> None:
    """Grant ``perm`` on ``obj`` to a member of its tenant; atomic with its audit row."""
    _audited(grant_object_perm, "grant", user=user, perm=perm, obj=obj)


def object_permission_revoke(*, user: Any, perm: str, obj: models.Model) -> None:
    """Withdraw ``perm`` on ``obj`` from ``user``; atomic with its audit row."""
    _audited(revoke_object_perm, "revoke", user=user, perm=perm, obj=obj)


def _audited(change: Any, verb: str, *, user: Any, perm: str, obj: models.Model) -> None:
    """Make the grant change and write ``permission.<verb>`` in one transaction."""
    from django.db import transaction

    from controlplane.audit.services import audit_record

    grant = {"username": user.get_username(), "permission": perm}
    with transaction.atomic():
        change(user=user, perm=perm, obj=obj)
        audit_record(
            action=f"permission.{verb}",
            target=obj,
            tenant=obj.tenant,
            **({"after": grant} if verb == "grant" else {"before": grant}),
        )


# Cleanup ---------------------------------------------------------------------------------------
# The models whose objects may carry per-object grants. Deleting one of them, by its service, a
# cascade or any other way, deletes the grants on it (``connect_grant_cleanup``): a grant row left
# behind would name a primary key that a later object could reuse. Kept explicit (a receiver for
# every model would cost the fast bulk deletes of steps and events).
GRANTABLE_MODELS = (
    "agents.Agent",
    "agents.Tool",
    "agents.ProviderConnection",
    "agents.McpServer",
    "agents.Secret",
    "agents.KnowledgeDocument",
    "agents.ToolGrant",
    "runs.Workflow",
    "runs.Run",
    "policies.Policy",
    "runs.ApprovalRequest",
    "tenancy.Membership",
    "api.ApiToken",
)


def _grants_of_deleted_object(sender, instance, **kwargs) -> None:
    remove_object_grants(instance)


def connect_grant_cleanup() -> None:
    """Remove an object's grants whenever it is deleted (called once, from the app's ready())."""
    from django.apps import apps
    from django.db.models.signals import post_delete

    for label in GRANTABLE_MODELS:
        post_delete.connect(
            _grants_of_deleted_object,
            sender=apps.get_model(label),
            dispatch_uid=f"rbac.grant-cleanup.{label}",
        )


def remove_user_grants_in_tenant(*, user: Any, tenant: Any) -> int:
    """Delete every grant ``user`` holds on objects of ``tenant`` (they are leaving it).

    Grants on other tenants' objects stay. Returns how many were removed.
    """
    from django.contrib.contenttypes.models import ContentType
    from guardian.models import UserObjectPermission

    removed = 0
    by_type: dict[int, set[str]] = {}
    held = UserObjectPermission.objects.filter(user=user)
    for content_type_id, object_pk in held.values_list("content_type", "object_pk"):
        by_type.setdefault(content_type_id, set()).add(object_pk)
    for content_type_id, pks in by_type.items():
        model = ContentType.objects.get_for_id(content_type_id).model_class()
        if model is None or not any(f.name == "tenant" for f in model._meta.fields):
            continue
        manager = getattr(model.objects, "unscoped", None)
        queryset = manager() if manager else model._default_manager.all()
        in_tenant = {
            str(pk)
            for pk in queryset.filter(tenant=tenant, pk__in=list(pks)).values_list("pk", flat=True)
        }
        if in_tenant:
            removed += UserObjectPermission.objects.filter(
                user=user, content_type_id=content_type_id, object_pk__in=in_tenant
            ).delete()[0]
    return removed
