"""Immutable numbered versions (an agent's configuration, a policy's or a workflow's
definition): the fields and table options every version model shares. Knows no domain app."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from controlplane.tenancy.managers import TenantScopedModel


class ImmutableVersion(TenantScopedModel):
    """Abstract: one version of an owner, numbered 1, 2, ... per owner and never edited.

    A subclass declares the owner's foreign key (named after the owner's model, as
    ``controlplane.entities.add_version`` and the API's ``VersionDiffMixin`` expect), its
    content, and ``Meta = version_meta("<owner field>")``.
    """

    number = models.PositiveIntegerField()
    note = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True


def version_meta(owner: str) -> type:
    """The ``Meta`` of a version model: newest first per owner, one row per number."""

    class Meta:
        ordering = [owner, "-number"]
        constraints = [
            models.UniqueConstraint(fields=[owner, "number"], name=f"{owner}version_unique_number"),
        ]

    return Meta
