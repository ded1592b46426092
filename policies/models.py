"""Policies app: policies and their versions, stored decisions, spend counters."""

from __future__ import annotations

from django.db import models

from controlplane.model_bases import ImmutableVersion, NamedObject, version_meta
from controlplane.tenancy.managers import TenantScopedModel
from policies.choices import Effect, PolicyMode


class Policy(NamedObject):
    """A named set of rules, rate limits and budgets; what it says lives in immutable versions.

    ``active_version`` is the version being applied (None: nothing applied yet); newer
    versions are drafts until activated. In ``log_only`` mode the rules are evaluated and
    recorded as what they would have done, but never change a call's outcome.
    """

    mode = models.CharField(max_length=16, choices=PolicyMode.choices, default=PolicyMode.ENFORCE)
    active_version = models.ForeignKey(
        "PolicyVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    is_default = models.BooleanField(default=False)

    class Meta(NamedObject.Meta):
        constraints = [
            models.UniqueConstraint(fields=["tenant", "slug"], name="policy_unique_slug"),
        ]
        permissions = [("approve_policy", "Decide approvals this policy requires")]


class PolicyVersion(ImmutableVersion):
    """One immutable, validated definition (rules, rate limits, budgets) of a policy."""

    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="+")
    definition = models.JSONField()
    activated_at = models.DateTimeField(null=True, blank=True)

    Meta = version_meta("policy")

    def __str__(self) -> str:
        return f"{self.policy_id} v{self.number}"


class PolicyDecision(TenantScopedModel):
    """One answer of the decision point, with the rule that made it and the inputs it saw.

    ``inputs`` keeps the request (arguments clipped) so a draft policy can be replayed
    against recorded decisions; ``would_effect`` is what log-only policies would have said, and
    ``would_policy`` / ``would_rule`` / ``would_reason`` which of their rules would have said it.
    """

    run = models.ForeignKey(
        "runs.Run", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    step_key = models.CharField(max_length=100, blank=True)
    action = models.CharField(max_length=20)
    agent = models.CharField(max_length=50, blank=True)
    tool = models.CharField(max_length=50, blank=True)
    model = models.CharField(max_length=200, blank=True)
    effect = models.CharField(max_length=20, choices=Effect.choices)
    would_effect = models.CharField(max_length=20, blank=True)
    would_policy = models.ForeignKey(
        Policy, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    would_rule = models.CharField(max_length=100, blank=True)
    would_reason = models.CharField(max_length=500, blank=True)
    policy = models.ForeignKey(
        Policy, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    policy_version = models.ForeignKey(
        PolicyVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rule = models.CharField(max_length=100, blank=True)
    reason = models.CharField(max_length=500)
    inputs_hash = models.CharField(max_length=64)
    inputs = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["tenant", "-id"], name="policydecision_recent")]

    def __str__(self) -> str:
        return f"{self.action} {self.effect}"


class SpendCounter(TenantScopedModel):
    """Spend against a budget scope (``run:<id>`` or ``day:<YYYY-MM-DD>``), with reservations.

    A call reserves its estimate with a conditional UPDATE (used + reserved + estimate
    within the limit) before it runs and reconciles to the actual spend after, so
    concurrent calls cannot together overshoot a hard limit.
    """

    scope = models.CharField(max_length=40)
    tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    steps = models.PositiveIntegerField(default=0)
    reserved_tokens = models.BigIntegerField(default=0)
    reserved_cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "scope"], name="spendcounter_unique_scope"),
        ]

    def __str__(self) -> str:
        return self.scope
