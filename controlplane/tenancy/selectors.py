"""Reads about tenants shared by the API and the dashboard."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from controlplane.tenancy.models import Membership


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
