"""Resolving what the acting principal may do inside one tenant.

``resolve_access`` is called by the base API view and the base dashboard view
for every tenant URL; nothing under ``/t/<tenant>/`` is served without it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.db import models
from django.http import Http404

from controlplane.rbac.grants import has_object_perm
from controlplane.rbac.roles import role_permissions, scope_allows, scope_needed
from controlplane.tenancy.models import Membership, Tenant


@dataclasses.dataclass(frozen=True)
class Access:
    """A member's standing in a tenant: role, and the API token's scope if one was used."""

    tenant: Tenant
    user: Any
    role: str
    token_scope: str | None = None

    def has_perm(self, perm: str, obj: models.Model | None = None) -> bool:
        """Role permission, or a guardian grant on ``obj``; capped by the token's scope."""
        if self.token_scope is not None and not scope_allows(self.token_scope, perm):
            return False
        if perm in role_permissions(self.role):
            return True
        return obj is not None and has_object_perm(self.user, perm, obj)

    def refused_by_scope(self, perm: str, obj: models.Model | None = None) -> bool:
        """Whether the token's scope, not the role (or a grant), is what refuses ``perm``."""
        if self.token_scope is None or scope_allows(self.token_scope, perm):
            return False
        unscoped = dataclasses.replace(self, token_scope=None)
        return unscoped.has_perm(perm, obj)

    def refusal_message(self, perm: str, obj: models.Model | None = None) -> str:
        """Why ``perm`` is refused, in words that say what to change."""
        if self.refused_by_scope(perm, obj):
            return (
                f"This API token has scope {self.token_scope}, which does not allow this "
                f"action; your role would. Use a token with scope {scope_needed(perm)}."
            )
        return "Your role in this tenant does not allow this action."

    @property
    def permissions(self) -> frozenset[str]:
        perms = role_permissions(self.role)
        if self.token_scope is None:
            return perms
        return frozenset(p for p in perms if scope_allows(self.token_scope, p))


def resolve_access(*, user: Any, tenant_slug: str, token: Any = None) -> Access:
    """The user's access to the tenant named in the URL, or 404 if they are not a member.

    A token is bound to one tenant: used on another tenant's URL it answers 404
    exactly as a tenant the user does not belong to, so existence is not revealed.
    """
    if user is None or not user.is_authenticated:
        raise Http404("No such tenant.")
    membership = (
        Membership.objects.unscoped()
        .select_related("tenant")
        .filter(tenant__slug=tenant_slug, tenant__is_active=True, user=user)
        .first()
    )
    if membership is None:
        raise Http404("No such tenant.")
    if token is not None and token.tenant_id != membership.tenant_id:
        raise Http404("No such tenant.")
    return Access(
        tenant=membership.tenant,
        user=user,
        role=membership.role,
        token_scope=token.scope if token is not None else None,
    )
