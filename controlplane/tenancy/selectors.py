"""Reads about tenants shared by the API and the dashboard."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from controlplane.tenancy.models import Invitation, Membership


def memberships_of(user: Any) -> QuerySet[Membership]:
    """Every active tenant membership of ``user`` (deliberately across tenants)."""
    if user is None or not user.is_authenticated:
        return Membership.objects.unscoped().none()
    return (
        Membership.objects.unscoped()
        .filter(user=user, tenant__is_active=True)
        .select_related("tenant")
        .order_by("tenant__slug")
    )


def invitations_for(user: Any) -> QuerySet[Invitation]:
    """Open invitations addressed to ``user``'s account name (deliberately across tenants)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return Invitation.objects.unscoped().none()
    return (
        Invitation.objects.unscoped()
        .filter(
            username=user.get_username(),
            tenant__is_active=True,
            expires_at__gt=timezone.now(),
        )
        .select_related("tenant", "invited_by")
        .order_by("tenant__slug")
    )
