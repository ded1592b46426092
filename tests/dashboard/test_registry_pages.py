"""The registry's dashboard pages: agents, tools, providers, MCP servers, secrets, knowledge.

Every page gets the generic page tests of ``test_pages.TenantPageTests`` (anonymous,
outsider, each role, key content, forged POST); pages about one object also prove that
another tenant's object is a 404. Then the forms: path-keyed config errors that save
nothing, publish, rollback and diff, tool grants, per-object grants, connection tests,
MCP discovery against the real test server, and secrets that never reach any page.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest
from django.urls import reverse

from agents.forms.agents import config_example
from agents.models import (
    Agent,
    AgentVersion,
    KnowledgeDocument,
    McpServer,
    ProviderConnection,
    Secret,
    Tool,
    ToolGrant,
)
from agents.services.agents import agent_update
from agents.services.mcp_servers import mcp_server_create
from agents.services.tools import granted_tools
from controlplane import context
from controlplane.audit.models import AuditEvent
from controlplane.rbac.grants import grant_object_perm
from controlplane.tenancy.choices import Role
from runs.models import AgentMemory
from tests.agents.registry_factories import (
    make_agent,
    make_document,
    make_mcp_server,
    make_provider,
    make_secret,
    make_tool,
)
from tests.dashboard.test_pages import (
    NOT_FOUND_TEXT,
    TenantPageTests,
    client_for,
    messages_of,
    tenant_events,
    text,
)
from tests.mcp_process import free_port, running_mcp_test_server

pytestmark = pytest.mark.django_db


def field_block(body: str, name: str) -> str:
    """The HTML of one form field's block: label, widget, help and its errors."""
    match = re.search(rf'<div class="field[^"]*" id="field-{name}">(.*?)\n</div>', body, re.S)
    assert match, f"no field block for {name!r}"
    return match.group(1)


def field_errors(body: str, name: str) -> list[str]:
    block = field_block(body, name)
    return [
        html.unescape(e) for e in re.findall(r'<li class="error" role="alert">(.*?)</li>', block)
    ]


def acme_audit(action: str):
    return tenant_events_of("acme", action)


def tenant_events_of(slug: str, action: str):
    return AuditEvent.objects.unscoped().filter(tenant__slug=slug, action=action)


def dump(value: Any) -> str:
    return json.dumps(value)


class ForeignObjectChecks:
    """For pages about one object: another tenant's object is a 404 for every method."""

    def foreign_url_kwargs(self, world) -> dict[str, Any]:
        raise NotImplementedError

    def test_another_tenants_object_is_404(self, world):
        kwargs = self.foreign_url_kwargs(world)
        theirs = reverse(f"dashboard:{self.url_name}", kwargs={"tenant": "globex", **kwargs})
        # the object exists and its own tenant's owner sees it ...
        assert client_for(world.charlie).get(theirs).status_code == 200
        # ... but through acme's URL alice finds nothing, and cannot change it
        url = reverse(f"dashboard:{self.url_name}", kwargs={"tenant": "acme", **kwargs})
        alice = client_for(world.alice)
        response = alice.get(url)
        assert response.status_code == 404
        assert NOT_FOUND_TEXT in text(response)
        globex_events = AuditEvent.objects.unscoped().filter(tenant=world.globex).count()
        acme_events = AuditEvent.objects.unscoped().filter(tenant=world.acme).count()
        assert alice.post(url, self.forged_post(world)).status_code == 404
        assert AuditEvent.objects.unscoped().filter(tenant=world.globex).count() == globex_events
        assert AuditEvent.objects.unscoped().filter(tenant=world.acme).count() == acme_events


# agents ------------------------------------------------------------------------------------


def agent_config(provider_slug: str, **overrides) -> dict[str, Any]:
    return {
        "provider": provider_slug,
        "model": "sim-1",
        "system_prompt": "You help.",
        "temperature": 0.2,
        **overrides,
    }


class TestAgentListPage(TenantPageTests):
    url_name = "agents"
    permission = "agents.view_agent"

    def prepare(self, world):
        provider = make_provider(world.acme, slug="sim")
        make_agent(world.acme, slug="triage", provider=provider, tags=["support"])
        make_agent(world.globex, slug="globex-bot")
        return (
            [
                'href="/t/acme/agents/triage/"',
                "<code>triage</code>",
                '<td data-label="Version">v1</td>',
                'sim / sim-1 <span class="badge simulated">simulated</span>',
                '<span class="tag">support</span>',
                '<span class="badge status-active">active</span>',
                'aria-label="Filter agents"',
            ],
            ["globex-bot", "New agent", "Register the first agent"],
        )


class TestAgentCreatePage(TenantPageTests):
    url_name = "agent-create"
    permission = "agents.add_agent"
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    write_permission = "agents.add_agent"

    def url_kwargs(self, world):
        make_provider(world.acme, slug="sim")
        make_provider(world.globex, slug="globex-sim")
        return {}

    def prepare(self, world):
        return (
            [
                'name="config"',
                "&quot;provider&quot;: &quot;sim&quot;",
                '<option value="llm" selected>',
                'href="?kind=http"',
                "Register agent",
            ],
            ["globex-sim", "No model provider yet"],
        )

    def forged_post(self, world):
        return {
            "kind": "llm",
            "slug": "forged",
            "name": "Forged",
            "config": dump(agent_config("sim")),
        }

    def written(self, world):
        return sorted(Agent.objects.for_tenant(world.acme).values_list("slug", flat=True))


class TestAgentDetailPage(ForeignObjectChecks, TenantPageTests):
    url_name = "agent-detail"
    permission = "agents.view_agent"
    write_role = Role.ADMIN
    write_permission = "agents.change_agent"

    def url_kwargs(self, world):
        self.provider = make_provider(world.acme, slug="sim")
        self.agent = make_agent(world.acme, slug="triage", provider=self.provider)
        return {"slug": "triage"}

    def prepare(self, world):
        return (
            [
                '<pre id="current-config">',
                "&quot;temperature&quot;: 0.2",
                'id="version-history"',
                '<span class="badge current">current</span>',
                "simulated: answers come from the offline simulator",
                "No tools granted yet.",
            ],
            [
                'value="publish"',
                'value="rollback"',
                'value="grant"',
                'value="disable"',
                "Edit details",
                "Grant one below",
            ],
        )

    def forged_post(self, world):
        return {"op": "disable"}

    def written(self, world):
        return Agent.objects.for_tenant(world.acme).get(slug="triage").status

    def foreign_url_kwargs(self, world):
        make_agent(world.globex, slug="globex-bot")
        return {"slug": "globex-bot"}


class TestAgentEditPage(ForeignObjectChecks, TenantPageTests):
    url_name = "agent-edit"
    permission = "agents.change_agent"
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    write_permission = "agents.change_agent"

    def url_kwargs(self, world):
        make_agent(world.acme, slug="triage", tags=["support", "tier-1"])
        return {"slug": "triage"}

    def prepare(self, world):
        return (['value="support, tier-1"', 'name="name"', ">Save</button>"], ['name="config"'])

    def forged_post(self, world):
        return {"name": "Renamed", "description": "", "tags": "x"}

    def written(self, world):
        agent = Agent.objects.for_tenant(world.acme).get(slug="triage")
        return (agent.name, agent.tags)

    def foreign_url_kwargs(self, world):
        make_agent(world.globex, slug="globex-bot")
        return {"slug": "globex-bot"}


class TestAgentMemoryPage(ForeignObjectChecks, TenantPageTests):
    """Served by runs (the memory rows live with the runs); same permissions as the agent."""

    url_name = "agent-memory"
    permission = "agents.view_agent"
    write_role = Role.ADMIN
    write_permission = "agents.change_agent"

    def url_kwargs(self, world):
        agent = make_agent(world.acme, slug="triage")
        AgentMemory.objects.for_tenant(world.acme).create(
            tenant=world.acme, agent=agent, key="tier", value="gold"
        )
        return {"slug": "triage"}

    def prepare(self, world):
        return (['id="agent-memory"', "<code>tier</code>"], ['value="memory_clear"'])

    def forged_post(self, world):
        return {"op": "memory_clear"}

    def written(self, world):
        return list(AgentMemory.objects.for_tenant(world.acme).values_list("key", flat=True))

    def foreign_url_kwargs(self, world):
        make_agent(world.globex, slug="globex-bot")
        return {"slug": "globex-bot"}


# tools -------------------------------------------------------------------------------------


class TestToolListPage(TenantPageTests):
    url_name = "tools"
    permission = "agents.view_tool"

    def prepare(self, world):
        make_tool(world.acme, slug="calc", tags=["math"])
        server = make_mcp_server(world.acme, slug="files")
        with_mcp = Tool.objects.for_tenant(world.acme).create(
            tenant=world.acme,
            slug="files-wipe",
            name="Wipe",
            kind="mcp",
            mcp_server=server,
            mcp_tool_name="wipe",
            risk="destructive",
        )
        make_tool(world.globex, slug="globex-calc")
        return (
            [
                'href="/t/acme/tools/calc/"',
                "<code>calculator</code>",
                '<span class="badge risk-read">read</span>',
                f'<code>{with_mcp.mcp_tool_name}</code> on <a href="/t/acme/mcp-servers/files/">',
                '<span class="badge risk-destructive">destructive</span>',
            ],
            ["globex-calc", "New tool"],
        )


class TestToolCreatePage(TenantPageTests):
    url_name = "tool-create"
    permission = "agents.add_tool"
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    write_permission = "agents.add_tool"

    def prepare(self, world):
        return (
            [
                '<input type="hidden" name="kind" value="builtin">',
                '<option value="calculator">',
                "The built-in&#x27;s default",
                "Register tool",
            ],
            ['name="url"', 'name="config"'],
        )

    def forged_post(self, world):
        return {
            "kind": "builtin",
            "slug": "forged",
            "name": "Forged",
            "builtin": "calculator",
            "timeout_seconds": "30",
        }

    def written(self, world):
        return sorted(Tool.objects.for_tenant(world.acme).values_list("slug", flat=True))


class TestToolDetailPage(ForeignObjectChecks, TenantPageTests):
    url_name = "tool-detail"
    permission = "agents.view_tool"
    write_role = Role.ADMIN
    write_permission = "agents.change_tool"

    def url_kwargs(self, world):
        make_tool(world.acme, slug="calc")
        return {"slug": "calc"}

    def prepare(self, world):
        agent = make_agent(world.acme, slug="triage")
        tool = Tool.objects.for_tenant(world.acme).get(slug="calc")
        ToolGrant.objects.for_tenant(world.acme).create(tenant=world.acme, tool=tool, agent=agent)
        return (
            [
                '<pre id="input-schema">',
                '<span class="badge risk-read">read</span>',
                'href="/t/acme/agents/triage/">triage</a>',
            ],
            ['value="revoke"', 'value="grant"', 'value="disable"', ">Edit</a>"],
        )

    def forged_post(self, world):
        return {"op": "disable"}

    def written(self, world):
        return Tool.objects.for_tenant(world.acme).get(slug="calc").status

    def foreign_url_kwargs(self, world):
        make_tool(world.globex, slug="globex-calc")
        return {"slug": "globex-calc"}


class TestToolEditPage(ForeignObjectChecks, TenantPageTests):
    url_name = "tool-edit"
    permission = "agents.change_tool"
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    write_permission = "agents.change_tool"

    def url_kwargs(self, world):
        make_tool(world.acme, slug="calc")
        return {"slug": "calc"}

    def prepare(self, world):
        return (['name="builtin"', 'name="input_schema"', ">Save</button>"], ['name="kind"'])

    def forged_post(self, world):
        return {
            "slug": "calc",
            "name": "Renamed",
            "builtin": "calculator",
            "risk": "write",
            "timeout_seconds": "30",
        }

    def written(self, world):
        tool = Tool.objects.for_tenant(world.acme).get(slug="calc")
        return (tool.name, tool.risk)

    def foreign_url_kwargs(self, world):
        make_tool(world.globex, slug="globex-calc")
        return {"slug": "globex-calc"}


# providers ---------------------------------------------------------------------------------


class TestProviderListPage(TenantPageTests):
    url_name = "providers"
    permission = "agents.view_providerconnection"

    def prepare(self, world):
        make_provider(world.acme, slug="sim")
        make_provider(
            world.acme,
            slug="openai-main",
            kind="openai",
            api_key="sk-test-never-shown-1234",
            models=[{"name": "gpt-4o-mini", "input_per_mtok": 0.15, "output_per_mtok": 0.6}],
        )
        make_provider(world.globex, slug="globex-sim")
        return (
            [
                'href="/t/acme/providers/sim/"',
                '<span class="badge simulated">simulated</span>',
                "<code>gpt-4o-mini</code>",
                '<td data-label="Key">stored</td>',
                "not tested",
            ],
            ["globex-sim", "sk-test-never-shown-1234", "New provider"],
        )


class TestProviderCreatePage(TenantPageTests):
    url_name = "provider-create"
    permission = "agents.add_providerconnection"
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    write_permission = "agents.add_providerconnection"

    def prepare(self, world):
        return (
            ['type="password" name="api_key"', 'name="models"', "Add provider"],
            ['name="clear_api_key"'],
        )

    def forged_post(self, world):
        return {
            "slug": "forged",
            "name": "Forged",
            "kind": "simulated",
            "models": "[]",
            "timeout_seconds": "60",
        }

    def written(self, world):
        return sorted(
            ProviderConnection.objects.for_tenant(world.acme).values_list("slug", flat=True)
        )


class TestProviderDetailPage(ForeignObjectChecks, TenantPageTests):
    url_name = "provider-detail"
    permission = "agents.view_providerconnection"
    write_role = Role.ADMIN
    write_permission = "agents.change_providerconnection"

    def url_kwargs(self, world):
        make_provider(
            world.acme,
            slug="openai-main",
            kind="openai",
            base_url="https://llm.example.com/v1",
            api_key="sk-test-never-shown-1234",
            models=[{"name": "gpt-4o-mini", "input_per_mtok": 0.15, "output_per_mtok": 0.6}],
        )
        return {"slug": "openai-main"}

    def prepare(self, world):
        return (
            [
                "stored (hidden)",
                "<td><code>gpt-4o-mini</code></td>"
                '<td data-label="Input, USD per million tokens">0.15</td>',
                "Not tested yet.",
            ],
            ["sk-test-never-shown-1234", "Test connection", 'value="disable"'],
        )

    def forged_post(self, world):
        return {"op": "disable"}

    def written(self, world):
        return ProviderConnection.objects.for_tenant(world.acme).get(slug="openai-main").status

    def foreign_url_kwargs(self, world):
        make_provider(world.globex, slug="globex-sim")
        return {"slug": "globex-sim"}


class TestProviderEditPage(ForeignObjectChecks, TenantPageTests):
    url_name = "provider-edit"
    permission = "agents.change_providerconnection"
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    write_permission = "agents.change_providerconnection"

    def url_kwargs(self, world):
        make_provider(world.acme, slug="sim")
        return {"slug": "sim"}

    def prepare(self, world):
        return (['name="models"', "&quot;sim-1&quot;", ">Save</button>"], [])

    def forged_post(self, world):
        return {
            "slug": "sim",
            "name": "Renamed",
            "kind": "simulated",
            "models": "[]",
            "timeout_seconds": "60",
        }

    def written(self, world):
        return ProviderConnection.objects.for_tenant(world.acme).get(slug="sim").name

    def foreign_url_kwargs(self, world):
        make_provider(world.globex, slug="globex-sim")
        return {"slug": "globex-sim"}


# MCP servers -------------------------------------------------------------------------------


class TestMcpServerListPage(TenantPageTests):
    url_name = "mcp-servers"
    permission = "agents.view_mcpserver"

    def prepare(self, world):
        make_mcp_server(world.acme, slug="files", url="https://mcp.example.com/mcp")
        make_mcp_server(world.globex, slug="globex-files")
        return (
            ['href="/t/acme/mcp-servers/files/"', "HTTP <code>https://mcp.example.com/mcp</code>"],
            ["globex-files", "New MCP server"],
        )


class TestMcpServerCreatePage(TenantPageTests):
    url_name = "mcp-server-create"
    permission = "agents.add_mcpserver"
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    write_permission = "agents.add_mcpserver"

    def prepare(self, world):
        return (['name="transport"', 'name="command"', 'name="args"', "Register server"], [])

    def forged_post(self, world):
        return {
            "slug": "forged",
            "name": "Forged",
            "transport": "http",
            "url": "https://mcp.example.com/mcp",
            "timeout_seconds": "30",
        }

    def written(self, world):
        return sorted(McpServer.objects.for_tenant(world.acme).values_list("slug", flat=True))


class TestMcpServerDetailPage(ForeignObjectChecks, TenantPageTests):
    url_name = "mcp-server-detail"
    permission = "agents.view_mcpserver"
    write_role = Role.ADMIN
    write_permission = "agents.change_mcpserver"

    def url_kwargs(self, world):
        make_mcp_server(
            world.acme,
            slug="files",
            url="https://mcp.example.com/mcp",
            secret_headers={"X-Api-Key": "mcp-key-never-shown-987"},
        )
        return {"slug": "files"}

    def prepare(self, world):
        return (
            [
                "<code>https://mcp.example.com/mcp</code>",
                "<code>X-Api-Key</code>",
                "(values hidden)",
                "No tools registered from this server yet.",
            ],
            ["mcp-key-never-shown-987", "Discover tools</button>", 'value="disable"'],
        )

    def forged_post(self, world):
        return {"op": "disable"}

    def written(self, world):
        return McpServer.objects.for_tenant(world.acme).get(slug="files").status

    def foreign_url_kwargs(self, world):
        make_mcp_server(world.globex, slug="globex-files")
        return {"slug": "globex-files"}


class TestMcpServerEditPage(ForeignObjectChecks, TenantPageTests):
    url_name = "mcp-server-edit"
    permission = "agents.change_mcpserver"
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    write_permission = "agents.change_mcpserver"

    def url_kwargs(self, world):
        make_mcp_server(world.acme, slug="files", url="https://mcp.example.com/mcp")
        return {"slug": "files"}

    def prepare(self, world):
        return (['value="https://mcp.example.com/mcp"', ">Save</button>"], [])

    def forged_post(self, world):
        return {
            "slug": "files",
            "name": "Renamed",
            "transport": "http",
            "url": "https://mcp.example.com/mcp",
            "timeout_seconds": "30",
        }

    def written(self, world):
        return McpServer.objects.for_tenant(world.acme).get(slug="files").name

    def foreign_url_kwargs(self, world):
        make_mcp_server(world.globex, slug="globex-files")
        return {"slug": "globex-files"}


# secrets -----------------------------------------------------------------------------------


class TestSecretListPage(TenantPageTests):
    url_name = "secrets"
    permission = "agents.view_secret"
    write_role = Role.ADMIN
    write_permission = "agents.add_secret"

    def prepare(self, world):
        make_secret(world.acme, name="crm-token", value="crm-value-never-shown-555")
        make_secret(world.globex, name="globex-token", value="globex-value-never-shown")
        return (
            ['href="/t/acme/secrets/crm-token/"', '<span class="muted">hidden</span>'],
            ["crm-value-never-shown-555", "globex-token", "Add a secret", 'name="value"'],
        )

    def forged_post(self, world):
        return {"name": "forged", "value": "forged-value"}

    def written(self, world):
        return sorted(Secret.objects.for_tenant(world.acme).values_list("name", flat=True))


class TestSecretDetailPage(ForeignObjectChecks, TenantPageTests):
    url_name = "secret-detail"
    permission = "agents.view_secret"
    write_role = Role.ADMIN
    write_permission = "agents.change_secret"

    def url_kwargs(self, world):
        make_secret(world.acme, name="crm-token", value="crm-value-never-shown-555")
        return {"name": "crm-token"}

    def prepare(self, world):
        return (
            ["Secret <code>crm-token</code>", "hidden: it is never shown"],
            ["crm-value-never-shown-555", 'name="value"', "Delete secret"],
        )

    def forged_post(self, world):
        return {"op": "update", "description": "forged", "value": "forged-value"}

    def written(self, world):
        secret = Secret.objects.for_tenant(world.acme).get(name="crm-token")
        return (secret.description, secret.value)

    def foreign_url_kwargs(self, world):
        make_secret(world.globex, name="globex-token")
        return {"name": "globex-token"}


# knowledge ---------------------------------------------------------------------------------


class TestKnowledgeListPage(TenantPageTests):
    url_name = "knowledge"
    permission = "agents.view_knowledgedocument"

    def prepare(self, world):
        make_document(world.acme, title="Refund policy", content="Refunds within 30 days.")
        make_document(world.globex, title="Globex handbook")
        return (
            ["Refund policy", "Refunds within 30 days.", "<code>default</code>"],
            ["Globex handbook", "New document"],
        )


class TestKnowledgeCreatePage(TenantPageTests):
    url_name = "knowledge-create"
    permission = "agents.add_knowledgedocument"
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    write_permission = "agents.add_knowledgedocument"

    def prepare(self, world):
        return (['name="content"', 'value="default"', "Add document"], ["Delete document"])

    def forged_post(self, world):
        return {"collection": "default", "title": "Forged", "content": "x"}

    def written(self, world):
        return sorted(
            KnowledgeDocument.objects.for_tenant(world.acme).values_list("title", flat=True)
        )


class TestKnowledgeDetailPage(ForeignObjectChecks, TenantPageTests):
    url_name = "knowledge-detail"
    permission = "agents.view_knowledgedocument"
    write_role = Role.ADMIN
    write_permission = "agents.change_knowledgedocument"

    def url_kwargs(self, world):
        self.document = make_document(world.acme, title="Refund policy", content="Within 30 days.")
        return {"pk": self.document.pk}

    def prepare(self, world):
        return (
            ['<div class="card" id="document-content"><p>Within 30 days.</p></div>'],
            ['name="content"', "Delete document"],
        )

    def forged_post(self, world):
        return {"collection": "default", "title": "Forged", "content": "x"}

    def written(self, world):
        return KnowledgeDocument.objects.for_tenant(world.acme).get(pk=self.document.pk).title

    def foreign_url_kwargs(self, world):
        return {"pk": make_document(world.globex, title="Globex handbook").pk}


# agent forms -------------------------------------------------------------------------------


@pytest.fixture
def sim(world):
    return make_provider(world.acme, slug="sim")


class TestAgentCreateForm:
    url = "/t/acme/agents/new/"

    def post(self, client, config, **overrides):
        data = {
            "kind": "llm",
            "slug": "triage",
            "name": "Triage",
            "tags": "support, tier-1",
            "config": config if isinstance(config, str) else dump(config),
            "note": "",
        }
        data.update(overrides)
        return client.post(self.url, data)

    def test_bad_config_shows_path_keyed_errors_next_to_the_field_and_saves_nothing(
        self, world, sim
    ):
        config = agent_config("sim", temperature=5, max_tokens=0, colour="blue")
        response = self.post(client_for(world.alice), config)
        assert response.status_code == 400
        body = text(response)
        errors = field_errors(body, "config")
        assert "config.temperature: 5 is greater than the maximum of 2" in errors
        assert "config.max_tokens: 0 is less than the minimum of 1" in errors
        # a problem at the root of the configuration has no deeper path
        assert "Additional properties are not allowed ('colour' was unexpected)" in errors
        assert 'aria-invalid="true"' in field_block(body, "config")
        assert "Nothing was saved." in body
        # what was typed is kept
        assert 'value="triage"' in body
        assert "&quot;colour&quot;: &quot;blue&quot;" in field_block(body, "config")
        assert not Agent.objects.for_tenant(world.acme).exists()
        assert not AgentVersion.objects.for_tenant(world.acme).exists()
        assert not acme_audit("agent.create").exists()

    def test_reference_errors_name_their_path(self, world, sim):
        response = self.post(client_for(world.alice), agent_config("nope"))
        assert response.status_code == 400
        assert field_errors(text(response), "config") == [
            "config.provider: No provider 'nope' in this tenant."
        ]
        response = self.post(client_for(world.alice), agent_config("sim", model="gpt-9"))
        assert field_errors(text(response), "config") == [
            "config.model: Provider 'sim' has no model 'gpt-9': use one of sim-1."
        ]
        assert not Agent.objects.for_tenant(world.acme).exists()

    def test_invalid_json_is_explained(self, world, sim):
        response = self.post(client_for(world.alice), '{"provider": "sim",}')
        assert response.status_code == 400
        [error] = field_errors(text(response), "config")
        assert error.startswith("This is not valid JSON: ")
        assert "line 1, column" in error
        list_response = self.post(client_for(world.alice), "[1, 2]")
        assert field_errors(text(list_response), "config") == ["Give an object ({...}) here."]
        assert not Agent.objects.for_tenant(world.acme).exists()

    def test_taken_slug_is_an_error_next_to_the_slug(self, world, sim):
        make_agent(world.acme, slug="triage", provider=sim)
        response = self.post(client_for(world.alice), agent_config("sim"))
        assert response.status_code == 400
        assert field_errors(text(response), "slug") == [
            "Agent 'triage' already exists in this tenant."
        ]
        assert Agent.objects.for_tenant(world.acme).count() == 1

    def test_every_problem_is_reported_in_one_answer(self, world, sim):
        make_agent(world.acme, slug="triage", provider=sim)
        config = agent_config("nope", temperature=5)  # a shape error and an unknown provider
        response = self.post(client_for(world.alice), config)
        assert response.status_code == 400
        body = text(response)
        assert field_errors(body, "slug") == ["Agent 'triage' already exists in this tenant."]
        assert set(field_errors(body, "config")) == {
            "config.temperature: 5 is greater than the maximum of 2",
            "config.provider: No provider 'nope' in this tenant.",
        }
        assert Agent.objects.for_tenant(world.acme).count() == 1

    def test_create_publishes_v1_and_opens_the_agent(self, world, sim):
        client = client_for(world.alice)
        response = self.post(client, agent_config("sim"), note="first cut")
        assert response.status_code == 302
        assert response["Location"] == "/t/acme/agents/triage/"
        agent = Agent.objects.for_tenant(world.acme).get(slug="triage")
        assert agent.tags == ["support", "tier-1"]
        version = agent.current_version
        assert (version.number, version.note, version.created_by) == (1, "first cut", world.alice)
        assert version.config == agent_config("sim")
        assert acme_audit("agent.create").get().actor_user_id == world.alice.pk
        page = client.get(response["Location"])
        assert "Agent “triage” registered as v1." in messages_of(page)

    @pytest.mark.parametrize("kind", ["llm", "http", "router", "human"])
    def test_each_kinds_example_is_prefilled_and_valid(self, world, sim, kind):
        client = client_for(world.alice)
        page = client.get(self.url, {"kind": kind})
        assert f'<option value="{kind}" selected>' in text(page)
        example = config_example(kind, world.acme)
        assert json.dumps(example, indent=2).replace('"', "&quot;") in text(page)
        response = self.post(client, example, kind=kind, slug=f"{kind}-agent")
        assert response.status_code == 302, field_errors(text(response), "config")
        assert Agent.objects.for_tenant(world.acme).get(slug=f"{kind}-agent").kind == kind

    def test_without_a_provider_the_page_says_what_to_do(self, world):
        body = text(client_for(world.alice).get(self.url))
        assert "No model provider yet" in body
        assert 'href="/t/acme/providers/new/"' in body
        empty = text(client_for(world.alice).get("/t/acme/agents/"))
        assert "An LLM agent needs a model provider" in empty


class TestAgentList:
    url = "/t/acme/agents/"

    def test_filters_and_search(self, world, sim):
        make_agent(world.acme, slug="triage", provider=sim, tags=["support"])
        make_agent(
            world.acme, slug="billing-bot", provider=sim, tags=["billing"], description="Invoices"
        )
        with_http = make_agent(
            world.acme, slug="crm-hook", config={"url": "https://crm.example.com/hook"}, kind="http"
        )
        with context.system_context("tests", tenant=world.acme):
            agent_update(agent=with_http, status="disabled")
        client = client_for(world.bob)

        def slugs(**params):
            return re.findall(
                r'href="/t/acme/agents/([a-z0-9-]+)/"', text(client.get(self.url, params))
            )

        assert slugs() == ["billing-bot", "crm-hook", "triage"]
        assert slugs(kind="http") == ["crm-hook"]
        assert slugs(status="active") == ["billing-bot", "triage"]
        assert slugs(tag="support") == ["triage"]
        assert slugs(q="invoice") == ["billing-bot"]
        none = client.get(self.url, {"q": "nothing-like-this"})
        assert "No agents match these filters." in text(none)
        invalid = client.get(self.url, {"kind": "robot"})
        assert invalid.status_code == 200
        assert 'class="error" role="alert"' in text(invalid)

    def test_empty_state_tells_an_admin_what_to_do_next(self, world, sim):
        admin = text(client_for(world.adam).get(self.url))
        assert "No agents yet." in admin
        assert "Register the first agent</a>" in admin
        viewer = text(client_for(world.bob).get(self.url))
        assert "Ask an owner or admin of this tenant to register one." in viewer
        assert "Register the first agent" not in viewer
        assert 'aria-label="Filter agents"' not in viewer  # nothing to filter yet


class TestAgentDetail:
    @pytest.fixture
    def agent(self, world, sim):
        return make_agent(world.acme, slug="triage", provider=sim)

    url = "/t/acme/agents/triage/"

    def publish(self, client, config, note="warmer"):
        return client.post(self.url, {"op": "publish", "config": dump(config), "note": note})

    def test_publish_creates_a_version_and_makes_it_current(self, world, agent):
        client = client_for(world.alice)
        response = self.publish(client, agent_config("sim", temperature=0.7))
        assert response.status_code == 302
        assert response["Location"] == f"{self.url}#versions"
        agent.refresh_from_db()
        assert agent.current_version.number == 2
        assert agent.current_version.config["temperature"] == 0.7
        assert agent.current_version.note == "warmer"
        assert agent.current_version.created_by == world.alice
        event = acme_audit("agent.publish").get()
        assert event.after["version"] == 2
        page = client.get(self.url)
        assert "Published v2; it is now current." in messages_of(page)
        body = text(page)
        assert "&quot;temperature&quot;: 0.7" in body.split('<pre id="current-config">')[1]
        assert "Publish v3</button>" in body
        assert "Roll back to v1</button>" in body
        assert "Roll back to v2" not in body  # the current version offers no rollback

    def test_publish_with_a_bad_config_is_400_with_paths_and_publishes_nothing(self, world, agent):
        response = self.publish(client_for(world.alice), agent_config("sim", temperature="hot"))
        assert response.status_code == 400
        assert field_errors(text(response), "config") == [
            "config.temperature: 'hot' is not of type 'number'"
        ]
        assert AgentVersion.objects.for_tenant(world.acme).count() == 1
        assert not acme_audit("agent.publish").exists()

    def test_rollback_creates_a_new_version_copying_the_old_one(self, world, agent):
        client = client_for(world.alice)
        self.publish(client, agent_config("sim", temperature=0.9))
        response = client.post(self.url, {"op": "rollback", "version": "1"})
        assert response.status_code == 302
        agent.refresh_from_db()
        current = agent.current_version
        assert current.number == 3
        assert current.rolled_back_from == 1
        assert current.config == agent_config("sim")
        assert AgentVersion.objects.for_tenant(world.acme).filter(agent=agent).count() == 3
        assert acme_audit("agent.rollback").get().after == {"version": 3, "copied_from": 1}
        page = client.get(self.url)
        assert "Rolled back: v3 copies v1 and is now current." in messages_of(page)
        body = text(page)
        assert "copy of v1" in body
        # the confirmation names what happens
        assert 'data-confirm="Roll triage back to v1?' in body

    def test_rollback_to_a_missing_version_is_explained(self, world, agent):
        response = client_for(world.alice).post(
            self.url, {"op": "rollback", "version": "9"}, follow=True
        )
        assert "triage has no version 9." in messages_of(response)
        assert AgentVersion.objects.for_tenant(world.acme).filter(agent=agent).count() == 1

    def test_diff_between_any_two_versions(self, world, agent):
        client = client_for(world.alice)
        self.publish(client, agent_config("sim", temperature=0.7, max_tokens=500))
        self.publish(client, agent_config("sim", temperature=0.1))
        response = client.get(self.url, {"from": "1", "to": "2"})
        body = text(response)
        assert "Changes from v1 to v2" in body
        table = body.split('id="version-diff"')[1].split("</table>")[0]
        rows = re.findall(
            r"<td><code>([^<]+)</code></td>"
            r'<td data-label="Change"><span class="badge change-(\w+)"',
            table,
        )
        assert rows == [("config.max_tokens", "added"), ("config.temperature", "changed")]
        assert "<pre>0.2</pre>" in table and "<pre>0.7</pre>" in table
        backwards = text(client.get(self.url, {"from": "3", "to": "1"}))
        assert "Changes from v3 to v1" in backwards
        same = text(client.get(self.url, {"from": "2", "to": "2"}))
        assert "v2 and v2 have the same configuration and tools." in same

    def test_diff_of_an_unknown_version_is_a_form_error_not_a_500(self, world, agent):
        self.publish(client_for(world.alice), agent_config("sim", temperature=0.7))
        response = client_for(world.bob).get(self.url, {"from": "7", "to": "1"})
        assert response.status_code == 200
        assert "Select a valid choice. 7 is not one of the available choices." in text(response)
        assert 'id="version-diff"' not in text(response)

    def test_grant_a_tool_then_publish_pins_it(self, world, agent):
        make_tool(world.acme, slug="calc")
        client = client_for(world.alice)
        before = text(client.get(self.url))
        assert '<option value="calc">calc · Calculator (read)</option>' in before
        response = client.post(self.url, {"op": "grant", "tool": "calc"})
        assert response.status_code == 302
        grant = ToolGrant.objects.for_tenant(world.acme).get()
        assert (grant.tool.slug, grant.agent_id) == ("calc", agent.pk)
        assert acme_audit("tool_grant.create").get().after["agent"] == "triage"
        page = text(client.get(self.url))
        assert "Granted since v1 was published, not pinned yet: <code>calc</code>" in page
        assert '<option value="calc">' not in page  # not offered twice
        self.publish(client, agent_config("sim"), note="pin calc")
        agent.refresh_from_db()
        assert agent.current_version.tools == [{"id": grant.tool_id, "slug": "calc"}]
        assert "not pinned yet" not in text(client.get(self.url))

    def test_grant_of_another_tenants_tool_is_refused(self, world, agent):
        make_tool(world.acme, slug="calc")
        make_tool(world.globex, slug="globex-calc")
        response = client_for(world.alice).post(self.url, {"op": "grant", "tool": "globex-calc"})
        assert response.status_code == 400
        assert field_errors(text(response), "tool") == [
            "Select a valid choice. That choice is not one of the available choices."
        ]
        assert not ToolGrant.objects.unscoped().exists()

    def test_revoke_a_grant(self, world, agent):
        make_tool(world.acme, slug="calc")
        client = client_for(world.alice)
        client.post(self.url, {"op": "grant", "tool": "calc"})
        grant = ToolGrant.objects.for_tenant(world.acme).get()
        response = client.post(self.url, {"op": "revoke", "grant": str(grant.pk)})
        assert response.status_code == 302
        assert not ToolGrant.objects.for_tenant(world.acme).exists()
        assert acme_audit("tool_grant.delete").exists()

    def test_disable_and_enable(self, world, agent):
        client = client_for(world.alice)
        assert client.post(self.url, {"op": "disable"}).status_code == 302
        agent.refresh_from_db()
        assert agent.status == "disabled"
        body = text(client.get(self.url))
        assert '<span class="badge status-disabled">disabled</span>' in body
        assert 'value="enable"' in body
        client.post(self.url, {"op": "enable"})
        agent.refresh_from_db()
        assert agent.status == "active"

    def test_unknown_action_is_reported(self, world, agent):
        response = client_for(world.alice).post(self.url, {"op": "explode"}, follow=True)
        assert "Unknown action." in messages_of(response)

    def test_simulated_label_only_for_the_simulated_provider(self, world, agent):
        assert "simulated: answers come from the offline simulator" in text(
            client_for(world.bob).get(self.url)
        )
        real = make_provider(
            world.acme,
            slug="real",
            kind="openai",
            base_url="https://llm.example.com/v1",
            models=[{"name": "gpt-4o-mini"}],
        )
        make_agent(
            world.acme,
            slug="real-agent",
            provider=real,
            config=agent_config("real", model="gpt-4o-mini"),
        )
        body = text(client_for(world.bob).get("/t/acme/agents/real-agent/"))
        assert "simulated" not in body

    def test_viewer_sees_no_write_buttons_and_forged_posts_are_403(self, world, agent):
        make_tool(world.acme, slug="calc")
        client = client_for(world.bob)
        body = text(client.get(self.url))
        for needle in (
            "Publish v",
            "Roll back",
            "Grant tool",
            "Disable",
            "Edit details",
        ):
            assert needle not in body, needle
        assert body.count('<form method="post"') == 1  # signing out is the only one
        forged = [
            {"op": "publish", "config": dump(agent_config("sim", temperature=1)), "note": ""},
            {"op": "rollback", "version": "1"},
            {"op": "grant", "tool": "calc"},
            {"op": "disable"},
        ]
        for data in forged:
            assert client.post(self.url, data).status_code == 403, data
        assert AgentVersion.objects.for_tenant(world.acme).count() == 1
        assert not ToolGrant.objects.for_tenant(world.acme).exists()
        agent.refresh_from_db()
        assert agent.status == "active"
        assert tenant_events(world.acme, "permission.denied").count() == len(forged)


class TestAgentObjectGrant:
    """An operator holding a guardian "agents.change_agent" grant on one agent."""

    def test_grant_lets_an_operator_publish_that_agent_only(self, world, sim):
        mine = make_agent(world.acme, slug="mine", provider=sim)
        make_agent(world.acme, slug="other", provider=sim)
        make_tool(world.acme, slug="calc")
        grant_object_perm(user=world.oscar, perm="agents.change_agent", obj=mine)
        client = client_for(world.oscar)

        page = text(client.get("/t/acme/agents/mine/"))
        assert "Publish v2</button>" in page
        assert "Edit details" in page
        assert 'value="grant"' not in page  # granting tools is a role permission
        response = client.post(
            "/t/acme/agents/mine/",
            {"op": "publish", "config": dump(agent_config("sim", temperature=1)), "note": ""},
        )
        assert response.status_code == 302
        mine.refresh_from_db()
        assert mine.current_version.number == 2
        assert client.get("/t/acme/agents/mine/edit/").status_code == 200

        # tool grants need agents.add_toolgrant: refused and audited
        refused = client.post("/t/acme/agents/mine/", {"op": "grant", "tool": "calc"})
        assert refused.status_code == 403
        denial = tenant_events(world.acme, "permission.denied").order_by("-seq").first()
        assert denial.metadata["permission"] == "agents.add_toolgrant"
        assert not ToolGrant.objects.for_tenant(world.acme).exists()

        # another agent: no grant, no publish
        other = client.post(
            "/t/acme/agents/other/",
            {"op": "publish", "config": dump(agent_config("sim")), "note": ""},
        )
        assert other.status_code == 403
        assert "Publish v2" not in text(client.get("/t/acme/agents/other/"))
        assert client.get("/t/acme/agents/other/edit/").status_code == 403


class TestAgentEdit:
    def test_edit_changes_metadata_only(self, world, sim):
        agent = make_agent(world.acme, slug="triage", provider=sim)
        client = client_for(world.alice)
        response = client.post(
            "/t/acme/agents/triage/edit/",
            {"name": "Ticket triage", "description": "Sorts tickets", "tags": "support, , ops"},
        )
        assert response.status_code == 302
        agent.refresh_from_db()
        assert (agent.name, agent.description, agent.tags) == (
            "Ticket triage",
            "Sorts tickets",
            ["support", "ops"],
        )
        assert agent.current_version.number == 1
        assert acme_audit("agent.update").get().after["name"] == "Ticket triage"

    def test_blank_name_is_an_error(self, world, sim):
        make_agent(world.acme, slug="triage", provider=sim)
        response = client_for(world.alice).post(
            "/t/acme/agents/triage/edit/", {"name": "", "description": "", "tags": ""}
        )
        assert response.status_code == 400
        assert field_errors(text(response), "name") == ["This field is required."]


# tool forms --------------------------------------------------------------------------------

HTTP_TOOL = {
    "kind": "http",
    "slug": "crm-lookup",
    "name": "CRM lookup",
    "description": "Find a customer",
    "url": "https://crm.example.com/customers/{id}",
    "method": "GET",
    "allowed_hosts": "crm.example.com",
    "headers": '{"Accept": "application/json"}',
    "secret_headers": '{"Authorization": "Bearer crm-header-never-shown-42"}',
    "input_schema": '{"type": "object", "properties": {"id": {"type": "string"}}}',
    "output_schema": "",
    "risk": "read",
    "timeout_seconds": "20",
    "tags": "crm",
}


class TestToolForms:
    def test_builtin_tool_gets_the_builtins_schemas_and_risk(self, world):
        client = client_for(world.alice)
        response = client.post(
            "/t/acme/tools/new/",
            {
                "kind": "builtin",
                "slug": "tickets",
                "name": "Open a ticket",
                "builtin": "ticket_create",
                "risk": "",
                "timeout_seconds": "30",
            },
        )
        assert response.status_code == 302
        assert response["Location"] == "/t/acme/tools/tickets/"
        tool = Tool.objects.for_tenant(world.acme).get(slug="tickets")
        assert (tool.kind, tool.builtin, tool.risk) == ("builtin", "ticket_create", "write")
        assert tool.input_schema["type"] == "object" and tool.input_schema["properties"]
        assert acme_audit("tool.create").get().actor_user_id == world.alice.pk
        page = text(client.get(response["Location"]))
        assert '<span class="badge risk-write">write</span>' in page

    def test_http_tool_secret_headers_are_write_only(self, world):
        client = client_for(world.alice)
        response = client.post("/t/acme/tools/new/", HTTP_TOOL)
        assert response.status_code == 302, text(response)
        tool = Tool.objects.for_tenant(world.acme).get(slug="crm-lookup")
        assert tool.secret_headers == {"Authorization": "Bearer crm-header-never-shown-42"}
        detail = text(client.get("/t/acme/tools/crm-lookup/"))
        assert '<dd id="secret-headers"><code>Authorization</code>' in detail
        assert "crm-header-never-shown-42" not in detail
        edit = text(client.get("/t/acme/tools/crm-lookup/edit/"))
        assert "Stored secret headers: <code>Authorization</code> (values hidden)." in edit
        assert "crm-header-never-shown-42" not in edit
        assert "Leave blank to keep the stored ones" in edit

        # a blank field keeps them ...
        kept = client.post(
            "/t/acme/tools/crm-lookup/edit/", {**HTTP_TOOL, "secret_headers": "", "name": "CRM"}
        )
        assert kept.status_code == 302
        tool.refresh_from_db()
        assert tool.name == "CRM"
        assert tool.secret_headers == {"Authorization": "Bearer crm-header-never-shown-42"}
        # ... a new value replaces them, and {} removes them
        client.post(
            "/t/acme/tools/crm-lookup/edit/",
            {**HTTP_TOOL, "secret_headers": '{"X-Key": "rotated-value-77"}'},
        )
        tool.refresh_from_db()
        assert tool.secret_headers == {"X-Key": "rotated-value-77"}
        client.post("/t/acme/tools/crm-lookup/edit/", {**HTTP_TOOL, "secret_headers": "{}"})
        tool.refresh_from_db()
        assert tool.secret_headers == {}

    def test_a_failed_save_does_not_echo_the_secret_back(self, world):
        response = client_for(world.alice).post(
            "/t/acme/tools/new/", {**HTTP_TOOL, "allowed_hosts": "other.example.com"}
        )
        assert response.status_code == 400
        body = text(response)
        [error] = field_errors(body, "url")
        assert "crm.example.com" in error
        assert "crm-header-never-shown-42" not in body
        assert "https://crm.example.com/customers/{id}" in field_block(body, "url")
        assert not Tool.objects.for_tenant(world.acme).exists()

    def test_schema_and_json_errors_are_shown_next_to_their_fields(self, world):
        response = client_for(world.alice).post(
            "/t/acme/tools/new/",
            {**HTTP_TOOL, "input_schema": '{"type": "banana"}', "headers": "{not json"},
        )
        assert response.status_code == 400
        body = text(response)
        assert field_errors(body, "headers")[0].startswith("This is not valid JSON")
        response = client_for(world.alice).post(
            "/t/acme/tools/new/", {**HTTP_TOOL, "input_schema": '{"type": "banana"}'}
        )
        [error] = field_errors(text(response), "input_schema")
        assert error.startswith("$.type: 'banana' is not valid under any of the given schemas")
        assert not Tool.objects.for_tenant(world.acme).exists()

    def test_mcp_tools_are_edited_in_part_and_not_created_here(self, world):
        server = make_mcp_server(world.acme, slug="files")
        Tool.objects.for_tenant(world.acme).create(
            tenant=world.acme,
            slug="files-echo",
            name="Echo",
            kind="mcp",
            mcp_server=server,
            mcp_tool_name="echo",
            risk="write",
            input_schema={"type": "object"},
        )
        client = client_for(world.alice)
        edit = text(client.get("/t/acme/tools/files-echo/edit/"))
        assert 'name="risk"' in edit
        assert 'name="url"' not in edit and 'name="input_schema"' not in edit
        response = client.post(
            "/t/acme/tools/files-echo/edit/",
            {"slug": "files-echo", "name": "Echo", "risk": "destructive", "timeout_seconds": "5"},
        )
        assert response.status_code == 302
        tool = Tool.objects.for_tenant(world.acme).get(slug="files-echo")
        assert (tool.risk, tool.timeout_seconds, tool.mcp_tool_name) == ("destructive", 5, "echo")
        # the create page makes only built-in and HTTP tools
        forged = client.post(
            "/t/acme/tools/new/",
            {
                "kind": "mcp",
                "slug": "x",
                "name": "X",
                "builtin": "calculator",
                "timeout_seconds": "5",
            },
        )
        assert forged.status_code == 302
        assert Tool.objects.for_tenant(world.acme).get(slug="x").kind == "builtin"

    def test_grant_to_a_tag_from_the_tools_page(self, world):
        make_tool(world.acme, slug="calc")
        agent = make_agent(world.acme, slug="triage", tags=["support"])
        client = client_for(world.alice)
        neither = client.post("/t/acme/tools/calc/", {"op": "grant"})
        assert neither.status_code == 400
        assert "Choose an agent or type a tag, not both and not neither." in text(neither)
        response = client.post("/t/acme/tools/calc/", {"op": "grant", "agent_tag": "support"})
        assert response.status_code == 302
        grant = ToolGrant.objects.for_tenant(world.acme).get()
        assert (grant.agent_id, grant.agent_tag) == (None, "support")
        assert 'every agent tagged <span class="tag">support</span>' in text(
            client.get("/t/acme/agents/triage/")
        )
        with context.tenant_context(world.acme):
            assert [t.slug for t in granted_tools(agent)] == ["calc"]
        revoke = client.post("/t/acme/tools/calc/", {"op": "revoke", "grant": str(grant.pk)})
        assert revoke.status_code == 302
        assert not ToolGrant.objects.for_tenant(world.acme).exists()

    def test_tool_list_filters(self, world):
        make_tool(world.acme, slug="calc")
        make_tool(world.acme, slug="tickets", builtin="ticket_create")
        client = client_for(world.bob)

        def slugs(**params):
            body = text(client.get("/t/acme/tools/", params))
            return re.findall(r'href="/t/acme/tools/([a-z0-9-]+)/"', body)

        assert slugs() == ["calc", "tickets"]
        assert slugs(risk="write") == ["tickets"]
        assert slugs(q="tickets") == ["tickets"]
        assert slugs(kind="http") == []


# provider forms ----------------------------------------------------------------------------


class TestProviderForms:
    def test_simulated_provider_connection_test_without_js(self, world):
        make_provider(world.acme, slug="sim")
        client = client_for(world.alice)
        response = client.post("/t/acme/providers/sim/", {"op": "test"})
        assert response.status_code == 302
        assert response["Location"] == "/t/acme/providers/sim/#connection-test"
        provider = ProviderConnection.objects.for_tenant(world.acme).get(slug="sim")
        assert provider.last_test_ok is True
        event = acme_audit("provider.test").get()
        assert event.metadata["ok"] is True
        page = client.get("/t/acme/providers/sim/")
        assert any(m.startswith("Connection works: ") for m in messages_of(page))
        assert "<strong>✓ Works.</strong>" in text(page)

    def test_connection_test_answers_a_fragment_to_htmx(self, world):
        make_provider(world.acme, slug="sim")
        response = client_for(world.alice).post(
            "/t/acme/providers/sim/", {"op": "test"}, HTTP_HX_REQUEST="true"
        )
        assert response.status_code == 200
        body = text(response)
        assert body.lstrip().startswith('<section id="connection-test"')
        assert "<html" not in body
        assert "<strong>✓ Works.</strong>" in body
        assert 'hx-post="/t/acme/providers/sim/"' in body  # the button works again

    def test_a_failing_connection_is_told_in_plain_words(self, world):
        port = free_port()  # nothing listens there
        make_provider(
            world.acme,
            slug="local",
            kind="openai",
            base_url=f"http://127.0.0.1:{port}/v1",
            api_key="sk-local-never-shown-31",
            models=[],
        )
        response = client_for(world.alice).post(
            "/t/acme/providers/local/", {"op": "test"}, HTTP_HX_REQUEST="true"
        )
        assert response.status_code == 200
        body = text(response)
        assert "<strong>✕ Failed.</strong>" in body
        assert f"127.0.0.1:{port}" in body
        assert "Traceback" not in body and "sk-local-never-shown-31" not in body
        provider = ProviderConnection.objects.for_tenant(world.acme).get(slug="local")
        assert provider.last_test_ok is False and provider.last_test_message

    def test_api_key_is_write_only(self, world):
        client = client_for(world.alice)
        response = client.post(
            "/t/acme/providers/new/",
            {
                "slug": "openai-main",
                "name": "OpenAI",
                "kind": "openai",
                "base_url": "https://llm.example.com/v1",
                "api_key": "sk-live-never-shown-777",
                "models": dump(
                    [{"name": "gpt-4o-mini", "input_per_mtok": 0.15, "output_per_mtok": 0.6}]
                ),
                "timeout_seconds": "30",
            },
        )
        assert response.status_code == 302, text(response)
        provider = ProviderConnection.objects.for_tenant(world.acme).get(slug="openai-main")
        assert provider.api_key == "sk-live-never-shown-777"
        assert provider.price_of("gpt-4o-mini") == (0.15, 0.6)
        for url in (
            "/t/acme/providers/",
            "/t/acme/providers/openai-main/",
            "/t/acme/providers/openai-main/edit/",
        ):
            assert "sk-live-never-shown-777" not in text(client.get(url)), url
        edit = text(client.get("/t/acme/providers/openai-main/edit/"))
        assert "A key is stored (hidden). Leave blank to keep it" in edit

        form = {
            "slug": "openai-main",
            "name": "OpenAI main",
            "kind": "openai",
            "base_url": "https://llm.example.com/v1",
            "api_key": "",
            "models": "[]",
            "timeout_seconds": "30",
        }
        assert client.post("/t/acme/providers/openai-main/edit/", form).status_code == 302
        provider.refresh_from_db()
        assert (provider.name, provider.api_key) == ("OpenAI main", "sk-live-never-shown-777")
        assert provider.models == []
        client.post(
            "/t/acme/providers/openai-main/edit/", {**form, "api_key": "sk-rotated-never-shown"}
        )
        provider.refresh_from_db()
        assert provider.api_key == "sk-rotated-never-shown"
        client.post("/t/acme/providers/openai-main/edit/", {**form, "clear_api_key": "on"})
        provider.refresh_from_db()
        assert provider.api_key == ""
        assert "none stored" in text(client.get("/t/acme/providers/openai-main/"))

    def test_invalid_models_and_kind_rules_are_explained(self, world):
        client = client_for(world.alice)
        base = {"slug": "p", "name": "P", "kind": "openai", "timeout_seconds": "30"}
        response = client.post(
            "/t/acme/providers/new/", {**base, "models": '[{"name": "m", "input_per_mtok": -1}]'}
        )
        assert response.status_code == 400
        assert field_errors(text(response), "models") == [
            "Item 0: input_per_mtok must be a number >= 0 (USD per million tokens)."
        ]
        response = client.post(
            "/t/acme/providers/new/",
            {**base, "kind": "simulated", "api_key": "sk-no-key-for-sim-12", "models": "[]"},
        )
        assert response.status_code == 400
        body = text(response)
        assert field_errors(body, "kind") == [
            "The simulated provider takes no base URL or API key."
        ]
        assert "sk-no-key-for-sim-12" not in body
        assert not ProviderConnection.objects.for_tenant(world.acme).exists()

    def test_simulated_provider_is_labelled(self, world):
        make_provider(world.acme, slug="sim")
        body = text(client_for(world.bob).get("/t/acme/providers/sim/"))
        assert "Its answers do not come from a real model" in body


# MCP server forms and discovery ------------------------------------------------------------


@pytest.fixture(scope="module")
def mcp_url():
    with running_mcp_test_server() as url:
        yield url


class TestMcpServerForms:
    def test_register_http_server_with_write_only_secret_headers(self, world):
        client = client_for(world.alice)
        response = client.post(
            "/t/acme/mcp-servers/new/",
            {
                "slug": "files",
                "name": "Files",
                "transport": "http",
                "url": "https://mcp.example.com/mcp",
                "secret_headers": '{"X-Api-Key": "mcp-key-never-shown-987"}',
                "timeout_seconds": "30",
            },
        )
        assert response.status_code == 302
        assert response["Location"] == "/t/acme/mcp-servers/files/"
        server = McpServer.objects.for_tenant(world.acme).get(slug="files")
        assert server.secret_headers == {"X-Api-Key": "mcp-key-never-shown-987"}
        assert acme_audit("mcp_server.create").exists()
        for url in (
            "/t/acme/mcp-servers/",
            "/t/acme/mcp-servers/files/",
            "/t/acme/mcp-servers/files/edit/",
        ):
            assert "mcp-key-never-shown-987" not in text(client.get(url)), url
        # editing with the secret fields blank keeps them
        client.post(
            "/t/acme/mcp-servers/files/edit/",
            {
                "slug": "files",
                "name": "Files 2",
                "transport": "http",
                "url": server.url,
                "timeout_seconds": "30",
            },
        )
        server.refresh_from_db()
        assert server.name == "Files 2"
        assert server.secret_headers == {"X-Api-Key": "mcp-key-never-shown-987"}

    def test_stdio_server_needs_its_command(self, world, settings):
        settings.MCP_STDIO_COMMANDS = ["python3"]
        client = client_for(world.alice)
        data = {"slug": "local", "name": "Local", "transport": "stdio", "timeout_seconds": "30"}
        response = client.post("/t/acme/mcp-servers/new/", data)
        assert response.status_code == 400
        assert field_errors(text(response), "command") == [
            "A stdio server needs the command that starts it."
        ]
        response = client.post("/t/acme/mcp-servers/new/", {**data, "command": "/bin/sh -c id"})
        assert response.status_code == 400
        assert field_errors(text(response), "command") == [
            "'/bin/sh' is not an allowed stdio MCP command here; allowed: python3 "
            "(MCP_STDIO_COMMANDS)."
        ]
        response = client.post(
            "/t/acme/mcp-servers/new/",
            {**data, "command": "python3", "args": "server.py\n--verbose\n"},
        )
        assert response.status_code == 302
        server = McpServer.objects.for_tenant(world.acme).get(slug="local")
        assert (server.command, server.args) == ("python3", ["server.py", "--verbose"])
        assert "<code>python3 server.py --verbose</code>" in text(
            client.get("/t/acme/mcp-servers/local/")
        )

    def test_discover_lists_the_tools_with_schemas_and_risk(self, world, mcp_url):
        make_mcp_server(world.acme, slug="testsrv", url=mcp_url)
        client = client_for(world.alice)
        response = client.post(
            "/t/acme/mcp-servers/testsrv/", {"op": "discover"}, HTTP_HX_REQUEST="true"
        )
        assert response.status_code == 200
        body = text(response)
        assert body.lstrip().startswith('<section id="mcp-tools"')
        assert "<html" not in body
        assert re.search(r"<strong>✓</strong> Discovered \d+ tools: ", body)
        rows = dict(
            re.findall(
                r'<td data-label="Name on the server"><code>([a-z_]+)</code></td>\s*'
                r'<td data-label="Risk"><span class="badge risk-(\w+)"',
                body,
            )
        )
        assert rows["add"] == "read"
        assert rows["wipe"] == "destructive"
        assert rows["echo"] == "write"
        assert "Input schema</summary><pre>" in body
        assert "&quot;text&quot;" in body  # echo's argument, from its schema
        tool = Tool.objects.for_tenant(world.acme).get(slug="testsrv-add")
        assert (tool.kind, tool.mcp_tool_name) == ("mcp", "add")
        assert acme_audit("mcp_server.discover").get().metadata["created"] >= 3

        # without htmx: a redirect, and the page lists the tools
        again = client.post("/t/acme/mcp-servers/testsrv/", {"op": "discover"})
        assert again.status_code == 302
        page = client.get(again["Location"].split("#")[0])
        assert any(m.startswith("Discovered ") for m in messages_of(page))
        assert 'href="/t/acme/tools/testsrv-wipe/"' in text(page)

    def test_discovery_failure_is_explained_not_a_500(self, world):
        port = free_port()
        make_mcp_server(world.acme, slug="gone", url=f"http://127.0.0.1:{port}/mcp")
        client = client_for(world.alice)
        response = client.post(
            "/t/acme/mcp-servers/gone/", {"op": "discover"}, HTTP_HX_REQUEST="true"
        )
        assert response.status_code == 200
        body = text(response)
        assert "<strong>✕</strong> Discovery failed: " in body
        assert "Traceback" not in body
        server = McpServer.objects.for_tenant(world.acme).get(slug="gone")
        assert server.last_error
        page = client.post("/t/acme/mcp-servers/gone/", {"op": "discover"}, follow=True)
        assert any(m.startswith("Discovery failed: ") for m in messages_of(page))
        assert "The last attempt failed: " in text(page)
        assert not Tool.objects.for_tenant(world.acme).exists()

    def test_disabling_a_server_disables_its_tools_and_discovery(self, world, mcp_url):
        make_mcp_server(world.acme, slug="testsrv", url=mcp_url)
        client = client_for(world.alice)
        client.post("/t/acme/mcp-servers/testsrv/", {"op": "discover"})
        client.post("/t/acme/mcp-servers/testsrv/", {"op": "disable"})
        assert set(Tool.objects.for_tenant(world.acme).values_list("status", flat=True)) == {
            "disabled"
        }
        response = client.post("/t/acme/mcp-servers/testsrv/", {"op": "discover"}, follow=True)
        assert "Discovery failed: The MCP server 'testsrv' is disabled; enable it first." in (
            messages_of(response)
        )


# secrets -----------------------------------------------------------------------------------


class TestSecretForms:
    url = "/t/acme/secrets/"

    def test_create_update_and_delete(self, world):
        client = client_for(world.alice)
        response = client.post(
            self.url,
            {"name": "crm-token", "description": "CRM", "value": "first-value-never-shown"},
        )
        assert response.status_code == 302
        secret = Secret.objects.for_tenant(world.acme).get(name="crm-token")
        assert secret.value == "first-value-never-shown"
        event = acme_audit("secret.create").get()
        assert "first-value-never-shown" not in json.dumps([event.after, event.metadata])
        page = client.get(self.url)
        assert "Secret “crm-token” stored. Its value is not shown again." in messages_of(page)
        assert "first-value-never-shown" not in text(page)

        detail = "/t/acme/secrets/crm-token/"
        kept = client.post(detail, {"op": "update", "description": "CRM API", "value": ""})
        assert kept.status_code == 302
        secret.refresh_from_db()
        assert (secret.description, secret.value) == ("CRM API", "first-value-never-shown")
        client.post(detail, {"op": "update", "description": "CRM API", "value": " second "})
        secret.refresh_from_db()
        assert secret.value == " second "  # kept exactly as typed
        assert "second" not in text(client.get(detail)).split("<main")[1]

        deleted = client.post(detail, {"op": "delete"})
        assert deleted.status_code == 302
        assert deleted["Location"] == self.url
        assert not Secret.objects.for_tenant(world.acme).exists()
        assert acme_audit("secret.delete").exists()

    def test_duplicate_and_invalid_names_are_explained(self, world):
        make_secret(world.acme, name="crm-token")
        client = client_for(world.alice)
        response = client.post(self.url, {"name": "crm-token", "value": "dup-value-never-shown"})
        assert response.status_code == 400
        body = text(response)
        assert field_errors(body, "name") == ["A secret named 'crm-token' already exists."]
        assert "dup-value-never-shown" not in body
        response = client.post(self.url, {"name": "Bad Name", "value": ""})
        body = text(response)
        assert field_errors(body, "name")[0].startswith("Use 1-50 lowercase letters")
        assert field_errors(body, "value") == ["This field is required."]

    def test_viewer_cannot_change_or_delete(self, world):
        make_secret(world.acme, name="crm-token", value="viewer-never-sees-this")
        client = client_for(world.bob)
        body = text(client.get("/t/acme/secrets/crm-token/"))
        assert "Delete secret" not in body and 'name="value"' not in body
        for data in ({"op": "delete"}, {"op": "update", "description": "x", "value": "y"}):
            assert client.post("/t/acme/secrets/crm-token/", data).status_code == 403
        secret = Secret.objects.for_tenant(world.acme).get(name="crm-token")
        assert (secret.value, secret.description) == ("viewer-never-sees-this", "")


# knowledge ---------------------------------------------------------------------------------


class TestKnowledgeForms:
    def test_create_edit_delete(self, world):
        client = client_for(world.alice)
        response = client.post(
            "/t/acme/knowledge/new/",
            {
                "collection": "policies",
                "title": "Refunds",
                "content": "Within 30 days.",
                "tags": "billing",
            },
        )
        assert response.status_code == 302
        document = KnowledgeDocument.objects.for_tenant(world.acme).get()
        assert response["Location"] == f"/t/acme/knowledge/{document.pk}/"
        assert (document.collection, document.tags) == ("policies", ["billing"])
        url = response["Location"]
        client.post(
            url, {"collection": "policies", "title": "Refunds", "content": "Within 60 days."}
        )
        document.refresh_from_db()
        assert document.content == "Within 60 days."
        assert acme_audit("knowledge_document.update").exists()
        listing = text(client.get("/t/acme/knowledge/", {"collection": "policies"}))
        assert "Refunds" in listing
        assert "Refunds" not in text(client.get("/t/acme/knowledge/", {"collection": "other"}))
        assert client.post(url, {"op": "delete"}).status_code == 302
        assert not KnowledgeDocument.objects.for_tenant(world.acme).exists()

    def test_missing_fields_are_explained(self, world):
        response = client_for(world.alice).post(
            "/t/acme/knowledge/new/", {"collection": "Bad!", "title": "", "content": ""}
        )
        assert response.status_code == 400
        body = text(response)
        assert field_errors(body, "title") == ["This field is required."]
        assert field_errors(body, "content") == ["This field is required."]
        assert field_errors(body, "collection")[0].startswith("Use 1-50 lowercase letters")
        assert not KnowledgeDocument.objects.for_tenant(world.acme).exists()


# secrets never reach a page ----------------------------------------------------------------


def test_secret_values_never_appear_in_any_page(world, settings):
    settings.MCP_STDIO_COMMANDS = ["srv"]
    values = {
        "secret": "plain-secret-value-0001",
        "provider": "sk-provider-key-0002",
        "tool": "tool-header-value-0003",
        "mcp_header": "mcp-header-value-0004",
        "mcp_env": "mcp-env-value-0005",
    }
    make_secret(world.acme, name="crm-token", value=values["secret"])
    make_provider(
        world.acme, slug="openai-main", kind="openai", api_key=values["provider"], models=[]
    )
    make_tool(
        world.acme,
        slug="crm",
        kind="http",
        builtin="",
        url="https://crm.example.com/x",
        allowed_hosts=["crm.example.com"],
        secret_headers={"Authorization": values["tool"]},
    )
    make_mcp_server(world.acme, slug="files", secret_headers={"X-Key": values["mcp_header"]})
    with context.system_context("tests", tenant=world.acme):
        mcp_server_create(
            tenant=world.acme,
            slug="local",
            name="Local",
            transport="stdio",
            command="srv",
            secret_env={"TOKEN": values["mcp_env"]},
        )
    make_agent(world.acme, slug="triage")
    urls = [
        reverse(f"dashboard:{name}", kwargs={"tenant": "acme", **kwargs})
        for name, kwargs in [
            ("overview", {}),
            ("audit", {}),
            ("agents", {}),
            ("agent-detail", {"slug": "triage"}),
            ("tools", {}),
            ("tool-detail", {"slug": "crm"}),
            ("tool-edit", {"slug": "crm"}),
            ("providers", {}),
            ("provider-detail", {"slug": "openai-main"}),
            ("provider-edit", {"slug": "openai-main"}),
            ("mcp-servers", {}),
            ("mcp-server-detail", {"slug": "files"}),
            ("mcp-server-edit", {"slug": "files"}),
            ("mcp-server-detail", {"slug": "local"}),
            ("mcp-server-edit", {"slug": "local"}),
            ("secrets", {}),
            ("secret-detail", {"name": "crm-token"}),
        ]
    ]
    for user in (world.alice, world.bob):
        client = client_for(user)
        for url in urls:
            response = client.get(url)
            expected = 403 if user == world.bob and url.endswith("/edit/") else 200
            assert response.status_code == expected, (user, url)
            body = text(response)
            for what, value in values.items():
                assert value not in body, (user.username, url, what)
    # the names are shown, so people know what is stored
    alice = client_for(world.alice)
    assert "<code>Authorization</code>" in text(alice.get("/t/acme/tools/crm/"))
    assert "<code>TOKEN</code>" in text(alice.get("/t/acme/mcp-servers/local/"))


# navigation --------------------------------------------------------------------------------


def test_registry_sections_are_in_the_navigation(world):
    make_agent(world.acme, slug="triage")
    body = text(client_for(world.bob).get("/t/acme/agents/triage/"))
    nav = body.split('<nav aria-label="Tenant sections" class="sections">')[1].split("</nav>")[0]
    links = re.findall(r'<a href="([^"]+)"', nav)
    assert links[:7] == [
        "/t/acme/",
        "/t/acme/agents/",
        "/t/acme/tools/",
        "/t/acme/mcp-servers/",
        "/t/acme/providers/",
        "/t/acme/secrets/",
        "/t/acme/knowledge/",
    ]
    # inside a section, its link says so (and is not claimed to be this very page)
    assert '<a href="/t/acme/agents/" aria-current="true">Agents</a>' in nav
    assert 'aria-current="page"' not in nav


def test_long_lists_are_paginated_and_keep_their_filters(world):
    for i in range(55):
        make_document(world.acme, title=f"Policy {i:03d}", content="Refunds and returns.")
    make_document(world.acme, title="Other", content="Unrelated.")
    client = client_for(world.bob)
    first = text(client.get("/t/acme/knowledge/", {"q": "refunds"}))
    titles = re.findall(r">(Policy \d{3})</a>", first)
    assert len(titles) == 50
    assert "Page 1 of 2" in first
    link = re.search(r'<a href="\?([^"]*)">Next →</a>', first)
    assert link, "no link to the next page"
    second = text(client.get(f"/t/acme/knowledge/?{html.unescape(link.group(1))}"))
    more = re.findall(r">(Policy \d{3})</a>", second)
    assert len(more) == 5 and not set(more) & set(titles)
    assert "Other" not in second  # the search still applies
    assert "Next →" not in second and "← Previous" in second
