import pytest
from django.core.management import call_command

from agents.models import Agent, KnowledgeDocument, ProviderConnection, Tool
from controlplane import context
from controlplane.audit.verify import verify_all
from controlplane.tenancy.models import Tenant


@pytest.mark.django_db
def test_seed_demo_builds_a_realistic_registry_idempotently(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    call_command("seed_demo")
    acme = Tenant.objects.get(slug="acme")
    with context.tenant_context(acme):
        agents = {a.slug: a for a in Agent.objects.select_related("current_version")}
        assert set(agents) == {
            "support-triage",
            "billing-support",
            "technical-support",
            "researcher",
            "summarizer",
            "refund-approver",
            "support-lead",
            "concierge",
        }
        assert agents["support-triage"].kind == "router"
        assert agents["refund-approver"].kind == "human"
        billing_tools = {t["slug"] for t in agents["billing-support"].current_version.tools}
        assert {"kb-search", "ticket-create", "calculator"} <= billing_tools
        assert ProviderConnection.objects.get(slug="simulated").kind == "simulated"
        openai = ProviderConnection.objects.get(slug="openai")
        assert openai.api_key_env == "OPENAI_API_KEY" and openai.api_key == ""
        assert KnowledgeDocument.objects.count() >= 5
        counts = (Agent.objects.count(), Tool.objects.count(), KnowledgeDocument.objects.count())
    call_command("seed_demo")
    with context.tenant_context(acme):
        assert (
            Agent.objects.count(),
            Tool.objects.count(),
            KnowledgeDocument.objects.count(),
        ) == counts
    assert all(report.ok for report in verify_all())
