from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from controlplane.tenancy.choices import Role
from controlplane.tenancy.managers import TenantManager

slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$",
    "Use 1-50 lowercase letters, digits and hyphens, starting and ending with a letter or digit.",
)
# an account name to invite, as Django's user model accepts it (checked by the form and the API)
username_validator = RegexValidator(r"^[\w.@+-]+$", "Use letters, digits and @ . + - _ only.")
USERNAME_MAX_LENGTH = 150


class Tenant(models.Model):
    """A team or organisation: the unit of isolation for every registry, run and audit row.

    Tenants are never deleted while they have audit history (the audit chain
    protects them); deactivate instead.
    """

    slug = models.CharField(max_length=50, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    # Bumped whenever an applied policy changes, so workers know their compiled copy is stale.
    policy_revision = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's role in one tenant. One row per (tenant, user); a user may join many tenants."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantManager()

    class Meta:
        ordering = ["tenant", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="membership_unique_user"),
        ]
        permissions = [("manage_members", "Manage the tenant's members and their roles")]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} as {self.role}"


class Invitation(models.Model):
    """An offer of a role in a tenant to whoever holds the account named ``username``.

    Created for any name an admin types, whether or not such an account exists, so the
    answer to an invitation reveals nothing about the site's accounts; the name becomes a
    member only when that account's holder accepts. One pending invitation per name and
    tenant; accepting, declining or cancelling deletes it (the audit trail keeps it).
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    username = models.CharField(max_length=USERNAME_MAX_LENGTH)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    objects = TenantManager()

    class Meta:
        ordering = ["tenant", "username"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "username"], name="invitation_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.username} invited to {self.tenant} as {self.role}"
