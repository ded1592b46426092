"""Every existing tenant gets the default policy new tenants are created with."""

from django.db import migrations

DEFAULT_DEFINITION = {
    "rules": [
        {
            "id": "destructive-tools-need-approval",
            "description": "An admin approves every call an agent makes to a destructive tool "
            "(tool steps of published workflows were reviewed when published).",
            "effect": "require_approval",
            "actions": ["call_tool"],
            "tools": ["risk:destructive"],
            "condition": "agent != ''",
            "approvers": {"role": "admin", "quorum": 1},
        }
    ]
}


def create_defaults(apps, schema_editor):
    Tenant = apps.get_model("tenancy", "Tenant")
    Policy = apps.get_model("policies", "Policy")
    PolicyVersion = apps.get_model("policies", "PolicyVersion")
    for tenant in Tenant.objects.all():
        if Policy.objects.filter(tenant=tenant, is_default=True).exists():
            continue
        if Policy.objects.filter(tenant=tenant, slug="default").exists():
            continue
        policy = Policy.objects.create(
            tenant=tenant,
            slug="default",
            name="Default policy",
            description="Calls of destructive tools by agents wait for an admin's approval; "
            "everything else is allowed.",
            is_default=True,
        )
        version = PolicyVersion.objects.create(
            tenant=tenant,
            policy=policy,
            number=1,
            definition=DEFAULT_DEFINITION,
            note="created by migration",
        )
        Policy.objects.filter(pk=policy.pk).update(active_version=version)
        Tenant.objects.filter(pk=tenant.pk).update(policy_revision=tenant.policy_revision + 1)


class Migration(migrations.Migration):
    dependencies = [
        ("policies", "0004_policies"),
        ("tenancy", "0002_tenant_policy_revision"),
    ]

    operations = [migrations.RunPython(create_defaults, migrations.RunPython.noop)]
