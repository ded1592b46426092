"""Demo policies for acme: a run budget and an after-hours rule in log-only mode, next to the
default policy every tenant starts with. Idempotent."""

from __future__ import annotations

from typing import Any

from controlplane import context
from controlplane.tenancy.models import Tenant
from policies.models import Policy
from policies.services import ensure_default_policy, policy_create

DEMO_POLICIES: list[dict[str, Any]] = [
    {
        "slug": "run-budget",
        "name": "Run budget",
        "description": "A run may take 50 steps and spend 2 USD; past 1 USD an admin is asked.",
        "definition": {
            "budgets": {"run": {"steps": 50, "cost_usd": 2, "soft_cost_usd": 1}},
            "rate_limits": [
                {"id": "model-calls", "scope": "tenant", "limit": 600, "per_seconds": 60}
            ],
        },
    },
    {
        "slug": "after-hours",
        "name": "No ticket changes after hours (trial)",
        "description": "Log-only: shows in each run's timeline what it would have refused.",
        "mode": "log_only",
        "definition": {
            "rules": [
                {
                    "id": "tickets-office-hours",
                    "description": "Ticket tools only between 07:00 and 19:00 UTC on weekdays",
                    "effect": "deny",
                    "actions": ["call_tool"],
                    "tools": ["tag:tickets"],
                    "condition": "hour < 7 || hour >= 19 || weekday >= 5",
                }
            ]
        },
    },
]


def seed(stdout: Any) -> None:
    """Called by seed_demo inside its transaction."""
    for tenant in Tenant.objects.filter(slug__in=["acme", "globex"]):
        created = 0
        with context.tenant_context(tenant):
            ensure_default_policy(tenant)
            for spec in DEMO_POLICIES if tenant.slug == "acme" else ():
                if Policy.objects.for_tenant(tenant).filter(slug=spec["slug"]).exists():
                    continue
                policy_create(tenant=tenant, note="demo", **spec)
                created += 1
        stdout.write(f"Policies demo for {tenant.slug}: {created} new policy(ies).")
