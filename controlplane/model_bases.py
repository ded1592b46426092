"""Abstract bases of the apps' tenant-scoped models: named objects (agents, tools, policies,
workflows, ...) and their immutable numbered versions. Knows no domain app."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from controlplane.choices import Status
from controlplane.tenancy.managers import TenantScopedModel
from controlplane.tenancy.models import slug_validator


class TimestampedObject(TenantScopedModel):
    """Abstract: a tenant's row that records when it was created and when last saved."""

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class NamedObject(TimestampedObject):
    """Abstract: a name, a slug unique in the tenant (the subclass's constraint), a
    description and timestamps; listed by slug."""

    slug = models.CharField(max_length=50, validators=[slug_validator])
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)

    class Meta:
        abstract = True
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name


class ManagedObject(NamedObject):
    """Abstract: a named object with tags and an active/disabled status (disabled, never
    deleted: runs and audit rows name it)."""

    tags = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)

    class Meta(NamedObject.Meta):
        abstract = True


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
