from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from controlplane.api.choices import TokenScope
from controlplane.tenancy.managers import TenantScopedModel


class ApiToken(TenantScopedModel):
    """A credential for programs, bound to one tenant and one user.

    Only a SHA-256 of the token is stored; the token itself is shown once at
    creation. ``prefix`` (the public part, ``cp_<prefix>_...``) finds the row.
    Revoked or expired tokens authenticate nothing. Effective rights are the
    user's current role in the tenant capped by ``scope``.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=8, unique=True)
    token_hash = models.CharField(max_length=64)
    scope = models.CharField(max_length=8, choices=TokenScope.choices, default=TokenScope.READ)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.is_expired:
            return "expired"
        return "active"
