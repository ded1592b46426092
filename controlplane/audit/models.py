from __future__ import annotations

from django.conf import settings
from django.db import models

from controlplane.tenancy.managers import TenantManager

GENESIS_HASH = "0" * 64


class AuditChain(models.Model):
    """Head of one hash chain: the tenant's, or the global one for tenant-less events.

    Writers lock this row (SELECT ... FOR UPDATE) to take the next gapless
    sequence number, so concurrent writers queue instead of forking the chain.
    The head also lets the verifier notice rows deleted from the chain's end.
    """

    key = models.CharField(max_length=40, unique=True)
    tenant = models.OneToOneField(
        "tenancy.Tenant", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    last_seq = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default=GENESIS_HASH)

    def __str__(self) -> str:
        return f"{self.key}@{self.last_seq}"


class ActorType(models.TextChoices):
    USER = "user", "User"
    TOKEN = "token", "API token"
    SYSTEM = "system", "System"
    ANONYMOUS = "anonymous", "Anonymous"


class AuditEvent(models.Model):
    """One append-only entry of the audit trail.

    ``hash = sha256(prev_hash + canonical JSON of the event)``, with a gapless
    ``seq`` per chain; editing, deleting or reordering rows breaks the chain and
    ``manage.py audit_verify`` reports where. Actor and target names are frozen
    as text so history outlives deletion. On PostgreSQL a trigger refuses
    UPDATE and DELETE on this table.
    """

    chain = models.CharField(max_length=40)
    seq = models.BigIntegerField()
    tenant = models.ForeignKey(
        "tenancy.Tenant", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField()
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_token = models.ForeignKey(
        "api.ApiToken",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_name = models.CharField(max_length=200)
    action = models.CharField(max_length=100)
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=100, blank=True)
    target_name = models.CharField(max_length=300, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    ip = models.CharField(max_length=45, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    objects = TenantManager()

    class Meta:
        ordering = ["-seq"]
        constraints = [
            models.UniqueConstraint(fields=["chain", "seq"], name="audit_event_chain_seq"),
        ]
        indexes = [
            models.Index(fields=["tenant", "-seq"], name="audit_tenant_seq"),
            models.Index(fields=["tenant", "action"], name="audit_tenant_action"),
            models.Index(fields=["tenant", "created_at"], name="audit_tenant_time"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} by {self.actor_name}"
