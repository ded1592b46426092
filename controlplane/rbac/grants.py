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
    from django.db import transaction

    from controlplane.audit.services import audit_record

    with transaction.atomic():
        grant_object_perm(user=user, perm=perm, obj=obj)
        audit_record(
            action="permission.grant",
            target=obj,
            tenant=obj.tenant,
            after={"username": user.get_username(), "permission": perm},
        )


def object_permission_revoke(*, user: Any, perm: str, obj: models.Model) -> None:
    """Withdraw ``perm`` on ``obj`` from ``user``; atomic with its audit row."""
    from django.db import transaction

    from controlplane.audit.services import audit_record

    with transaction.atomic():
        revoke_object_perm(user=user, perm=perm, obj=obj)
        audit_record(
            action="permission.revoke",
            target=obj,
            tenant=obj.tenant,
            before={"username": user.get_username(), "permission": perm},
        )
