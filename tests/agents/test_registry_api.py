"""Generic endpoint tests for every registry resource, plus their specific rules."""

import pytest

from agents.models import Agent, AgentVersion, ProviderConnection, Secret, ToolGrant
from controlplane.audit.models import AuditEvent
from controlplane.tenancy.choices import Role
from tests.agents.registry_factories import (
    make_agent,
    make_document,
    make_mcp_server,
    make_provider,
    make_secret,
    make_ticket,
    make_tool,
)
from tests.api_mixins import TenantEndpointTests, assert_error_shape


class RegistryEndpoint(TenantEndpointTests):
    read_role = Role.VIEWER
    write_role = Role.ADMIN
    supports_delete = False

    def lookup(self, obj):
        return obj.slug


class TestAgentsEndpoint(RegistryEndpoint):
    basename = "agent"
    lookup_kwarg = "slug"
    create_audit_action = "agent.create"
    update_audit_action = "agent.update"
    update_data = {"description": "Routes support tickets", "tags": ["support"]}
    invalid_create_data = {"slug": "Bad Slug", "name": "", "kind": "robot", "config": []}
    extra_routes = {
        "api:agent-versions",
        "api:agent-version",
        "api:agent-diff",
        "api:agent-publish",
        "api:agent-rollback",
        "api:agent-permissions",
    }

    def make_object(self, world, tenant):
        return make_agent(tenant)

    def create_data(self, world):
        provider = make_provider(world.acme)
        return {
            "slug": "triage",
            "name": "Triage",
            "kind": "llm",
            "tags": ["support"],
            "config": {"provider": provider.slug, "model": "sim-1", "system_prompt": "Classify."},
        }


class TestProvidersEndpoint(RegistryEndpoint):
    basename = "provider"
    lookup_kwarg = "slug"
    create_audit_action = "provider.create"
    update_audit_action = "provider.update"
    update_data = {"description": "Local vLLM"}
    invalid_create_data = {
        "slug": "x",
        "name": "X",
        "kind": "openai",
        "base_url": "not a url",
        "models": "gpt",
    }
    extra_routes = {"api:provider-test"}

    def make_object(self, world, tenant):
        return make_provider(tenant)

    def create_data(self, world):
        return {
            "slug": "vllm",
            "name": "vLLM",
            "kind": "openai",
            "base_url": "http://127.0.0.1:8009/v1",
            "api_key": "sk-test-abcdef123456",
            "models": [{"name": "llama", "input_per_mtok": 0.1, "output_per_mtok": 0.2}],
        }


class TestToolsEndpoint(RegistryEndpoint):
    basename = "tool"
    lookup_kwarg = "slug"
    create_audit_action = "tool.create"
    update_audit_action = "tool.update"
    update_data = {"description": "Adds numbers", "risk": "read"}
    invalid_create_data = {
        "slug": "t",
        "name": "T",
        "kind": "http",
        "url": "http://evil.test/x",
        "allowed_hosts": ["api.example.com"],
        "input_schema": {"type": 5},
    }
    extra_routes = {"api:tool-permissions"}

    def make_object(self, world, tenant):
        return make_tool(tenant)

    def create_data(self, world):
        return {
            "slug": "crm",
            "name": "CRM lookup",
            "kind": "http",
            "url": "https://crm.example.com/customers/{id}",
            "method": "GET",
            "allowed_hosts": ["crm.example.com"],
            "risk": "read",
            "secret_headers": {"Authorization": "Bearer crm-secret-token-xyz"},
            "input_schema": {
                "type": "object",
                "properties": {"id": {"type": "string"}},
                "required": ["id"],
            },
        }


class TestMcpServersEndpoint(RegistryEndpoint):
    basename = "mcp-server"
    lookup_kwarg = "slug"
    create_audit_action = "mcp_server.create"
    update_audit_action = "mcp_server.update"
    update_data = {"description": "Docs server"}
    invalid_create_data = {"slug": "m", "name": "M", "transport": "stdio", "command": ""}
    extra_routes = {"api:mcp-server-discover"}

    def make_object(self, world, tenant):
        return make_mcp_server(tenant)

    def create_data(self, world):
        return {
            "slug": "docs",
            "name": "Docs",
            "transport": "http",
            "url": "http://127.0.0.1:9/mcp",
            "secret_headers": {"X-Api-Key": "mcp-key-1"},
        }


class TestSecretsEndpoint(RegistryEndpoint):
    basename = "secret"
    lookup_kwarg = "name"
    supports_delete = True
    create_audit_action = "secret.create"
    update_audit_action = "secret.update"
    delete_audit_action = "secret.delete"
    update_data = {"value": "rotated-value-456"}
    invalid_create_data = {"name": "Not Valid", "value": ""}

    def make_object(self, world, tenant):
        return make_secret(tenant)

    def lookup(self, obj):
        return obj.name

    def create_data(self, world):
        return {"name": "crm-token", "value": "very-secret-crm-token", "description": "CRM"}


class TestToolGrantsEndpoint(RegistryEndpoint):
    basename = "tool-grant"
    lookup_kwarg = "pk"
    supports_update = False
    supports_delete = True
    create_audit_action = "tool_grant.create"
    delete_audit_action = "tool_grant.delete"
    invalid_create_data = {"tool": "does-not-exist", "agent": None, "agent_tag": ""}

    def make_object(self, world, tenant):
        tool = make_tool(tenant)
        from controlplane import context

        with context.system_context("tests", tenant=tenant):
            from agents.services.tools import tool_grant_create

            return tool_grant_create(tool=tool, agent_tag="support")

    def lookup(self, obj):
        return str(obj.pk)

    def create_data(self, world):
        return {"tool": make_tool(world.acme).slug, "agent": make_agent(world.acme).slug}


class TestKnowledgeDocumentsEndpoint(RegistryEndpoint):
    basename = "knowledge-document"
    lookup_kwarg = "pk"
    supports_delete = True
    create_audit_action = "knowledge_document.create"
    update_audit_action = "knowledge_document.update"
    delete_audit_action = "knowledge_document.delete"
    update_data = {"title": "Refunds (2026)"}
    invalid_create_data = {"title": "", "content": ""}

    def make_object(self, world, tenant):
        return make_document(tenant)

    def lookup(self, obj):
        return str(obj.pk)

    def create_data(self, world):
        return {"title": "Shipping", "content": "We ship in 2 days.", "collection": "faq"}


class TestTicketsEndpoint(RegistryEndpoint):
    basename = "ticket"
    lookup_kwarg = "number"
    write_role = None

    def make_object(self, world, tenant):
        return make_ticket(tenant)

    def lookup(self, obj):
        return str(obj.number)


@pytest.mark.django_db
class TestAgentVersions:
    def test_publish_diff_and_rollback(self, world, api):
        agent = make_agent(world.acme, slug="triage")
        client = api(world.adam, world.acme)
        config = dict(agent.current_version.config, temperature=0.9, system_prompt="Be brief.")
        published = client.post(
            "/api/v1/t/acme/agents/triage/publish/",
            {"config": config, "note": "warmer"},
            format="json",
        )
        assert published.status_code == 201, published.content
        assert published.json()["number"] == 2
        diff = client.get("/api/v1/t/acme/agents/triage/diff/?from=1&to=2").json()
        paths = {c["path"]: c for c in diff["changes"]}
        assert paths["config.temperature"] == {
            "path": "config.temperature",
            "change": "changed",
            "before": 0.2,
            "after": 0.9,
        }
        assert paths["config.system_prompt"]["after"] == "Be brief."
        rolled = client.post(
            "/api/v1/t/acme/agents/triage/rollback/", {"version": 1}, format="json"
        ).json()
        assert rolled["number"] == 3 and rolled["rolled_back_from"] == 1
        assert (
            rolled["config"]
            == AgentVersion.objects.for_tenant(world.acme).get(agent=agent, number=1).config
        )
        versions = client.get("/api/v1/t/acme/agents/triage/versions/").json()
        assert [v["number"] for v in versions] == [3, 2, 1]
        assert [v["is_current"] for v in versions] == [True, False, False]
        detail = client.get("/api/v1/t/acme/agents/triage/").json()
        assert detail["version"] == 3 and detail["config"]["temperature"] == 0.2
        actions = set(
            AuditEvent.objects.for_tenant(world.acme)
            .filter(target_id=str(agent.pk))
            .values_list("action", flat=True)
        )
        assert {"agent.create", "agent.publish", "agent.rollback"} <= actions

    def test_versions_are_immutable_through_the_api(self, world, api):
        agent = make_agent(world.acme, slug="triage")
        client = api(world.alice, world.acme)
        response = client.patch(
            "/api/v1/t/acme/agents/triage/",
            {"config": {"provider": "x", "model": "y"}},
            format="json",
        )
        body = assert_error_shape(response, 400, attr="config")
        assert "publish" in body["errors"][0]["detail"]
        assert AgentVersion.objects.for_tenant(world.acme).filter(agent=agent).count() == 1

    def test_publish_pins_the_tools_granted_at_that_time(self, world, api):
        agent = make_agent(world.acme, slug="triage", tags=["support"])
        tool = make_tool(world.acme, slug="calc")
        client = api(world.alice, world.acme)
        assert (
            client.post(
                "/api/v1/t/acme/tool-grants/",
                {"tool": "calc", "agent_tag": "support"},
                format="json",
            ).status_code
            == 201
        )
        config = agent.current_version.config
        v2 = client.post(
            "/api/v1/t/acme/agents/triage/publish/", {"config": config}, format="json"
        ).json()
        assert v2["tools"] == ["calc"]
        ToolGrant.objects.for_tenant(world.acme).filter(tool=tool).delete()
        assert client.get("/api/v1/t/acme/agents/triage/versions/2/").json()["tools"] == ["calc"]
        diff = client.get("/api/v1/t/acme/agents/triage/diff/?from=1&to=2").json()
        assert {"path": "tools", "change": "changed", "before": [], "after": ["calc"]} in (
            diff["changes"]
        )

    def test_config_errors_name_their_paths(self, world, api):
        make_provider(world.acme, slug="sim")
        response = api(world.alice, world.acme).post(
            "/api/v1/t/acme/agents/",
            {
                "slug": "a",
                "name": "A",
                "kind": "llm",
                "config": {"provider": "nope", "model": "m", "temperature": 7},
            },
            format="json",
        )
        body = assert_error_shape(response, 400)
        attrs = {e["attr"] for e in body["errors"]}
        assert "config.temperature" in attrs

        response = api(world.alice, world.acme).post(
            "/api/v1/t/acme/agents/",
            {"slug": "a", "name": "A", "kind": "llm", "config": {"provider": "nope", "model": "m"}},
            format="json",
        )
        assert_error_shape(response, 400, attr="config.provider")
        response = api(world.alice, world.acme).post(
            "/api/v1/t/acme/agents/",
            {
                "slug": "a",
                "name": "A",
                "kind": "llm",
                "config": {"provider": "sim", "model": "gpt-9"},
            },
            format="json",
        )
        assert_error_shape(response, 400, attr="config.model")

    def test_other_kinds_validate(self, world, api):
        client = api(world.alice, world.acme)
        router = {
            "slug": "router",
            "name": "R",
            "kind": "router",
            "config": {
                "mode": "rules",
                "default_route": "general",
                "rules": [
                    {
                        "when": {"path": "input.category", "op": "eq", "value": "billing"},
                        "route": "billing",
                    }
                ],
            },
        }
        assert client.post("/api/v1/t/acme/agents/", router, format="json").status_code == 201
        human = {
            "slug": "approver",
            "name": "H",
            "kind": "human",
            "config": {"instructions": "Approve refunds"},
        }
        assert client.post("/api/v1/t/acme/agents/", human, format="json").status_code == 201
        http = {
            "slug": "ext",
            "name": "E",
            "kind": "http",
            "config": {"url": "https://agents.example.com/run", "auth_secret": "missing"},
        }
        assert_error_shape(
            client.post("/api/v1/t/acme/agents/", http, format="json"),
            400,
            attr="config.auth_secret",
        )
        bad_router = {"slug": "r2", "name": "R", "kind": "router", "config": {"mode": "rules"}}
        assert_error_shape(client.post("/api/v1/t/acme/agents/", bad_router, format="json"), 400)

    def test_disable_agent(self, world, api):
        make_agent(world.acme, slug="triage")
        client = api(world.alice, world.acme)
        response = client.patch(
            "/api/v1/t/acme/agents/triage/", {"status": "disabled"}, format="json"
        )
        assert response.json()["status"] == "disabled"
        listed = client.get("/api/v1/t/acme/agents/?status=active").json()["results"]
        assert "triage" not in [a["slug"] for a in listed]

    def test_filters_and_search(self, world, api):
        make_agent(world.acme, slug="billing", tags=["support", "money"])
        make_agent(world.acme, slug="research", tags=["research"])
        client = api(world.bob, world.acme)
        tagged = client.get("/api/v1/t/acme/agents/?tag=support").json()["results"]
        assert [a["slug"] for a in tagged] == ["billing"]
        found = client.get("/api/v1/t/acme/agents/?q=resea").json()["results"]
        assert [a["slug"] for a in found] == ["research"]

    def test_simulated_is_labelled(self, world, api):
        make_agent(world.acme, slug="triage")
        client = api(world.bob, world.acme)
        assert client.get("/api/v1/t/acme/agents/triage/").json()["simulated"] is True
        provider = client.get("/api/v1/t/acme/providers/").json()["results"][0]
        assert provider["simulated"] is True and provider["kind"] == "simulated"


@pytest.mark.django_db
class TestObjectPermissions:
    def test_change_grant_lets_an_operator_publish_that_agent_only(self, world, api):
        make_agent(world.acme, slug="triage")
        make_agent(world.acme, slug="other")
        admin = api(world.alice, world.acme)
        operator = api(world.oscar, world.acme)
        config = Agent.objects.for_tenant(world.acme).get(slug="triage").current_version.config
        assert_error_shape(
            operator.post(
                "/api/v1/t/acme/agents/triage/publish/", {"config": config}, format="json"
            ),
            403,
        )
        granted = admin.post(
            "/api/v1/t/acme/agents/triage/permissions/",
            {"username": "oscar", "permission": "change"},
            format="json",
        )
        assert granted.status_code == 201
        assert {"username": "oscar", "permissions": ["change_agent"]} in granted.json()
        assert (
            operator.post(
                "/api/v1/t/acme/agents/triage/publish/", {"config": config}, format="json"
            ).status_code
            == 201
        )
        assert_error_shape(
            operator.post(
                "/api/v1/t/acme/agents/other/publish/", {"config": config}, format="json"
            ),
            403,
        )
        # and the grant cannot be handed on by its holder
        assert_error_shape(
            operator.post(
                "/api/v1/t/acme/agents/triage/permissions/",
                {"username": "bob", "permission": "change"},
                format="json",
            ),
            403,
        )
        revoked = admin.delete(
            "/api/v1/t/acme/agents/triage/permissions/?username=oscar&permission=change"
        )
        assert revoked.status_code == 204
        assert_error_shape(
            operator.post(
                "/api/v1/t/acme/agents/triage/publish/", {"config": config}, format="json"
            ),
            403,
        )
        actions = list(
            AuditEvent.objects.for_tenant(world.acme)
            .filter(action__startswith="permission.g")
            .values_list("action", flat=True)
        )
        assert actions == ["permission.grant"]

    def test_grant_to_outsider_is_400(self, world, api):
        make_tool(world.acme, slug="calc")
        response = api(world.alice, world.acme).post(
            "/api/v1/t/acme/tools/calc/permissions/",
            {"username": "charlie", "permission": "use"},
            format="json",
        )
        assert_error_shape(response, 400, attr="username")


@pytest.mark.django_db
class TestSecretsNeverLeak:
    SECRET_VALUES = (
        "sk-live-provider-key-0001",
        "crm-secret-token-xyz",
        "mcp-key-1",
        "very-secret-crm-token",
    )

    def test_secrets_absent_from_responses_audit_and_logs(self, world, api, caplog):
        client = api(world.alice, world.acme)
        bodies = []
        bodies.append(
            client.post(
                "/api/v1/t/acme/providers/",
                {
                    "slug": "openai",
                    "name": "OpenAI",
                    "kind": "openai",
                    "api_key": "sk-live-provider-key-0001",
                    "models": ["gpt-4o-mini"],
                },
                format="json",
            ).content
        )
        bodies.append(
            client.post(
                "/api/v1/t/acme/tools/",
                {
                    "slug": "crm",
                    "name": "CRM",
                    "kind": "http",
                    "url": "https://crm.example.com/c",
                    "allowed_hosts": ["crm.example.com"],
                    "secret_headers": {"Authorization": "crm-secret-token-xyz"},
                },
                format="json",
            ).content
        )
        bodies.append(
            client.post(
                "/api/v1/t/acme/mcp-servers/",
                {
                    "slug": "docs",
                    "name": "Docs",
                    "transport": "http",
                    "url": "http://127.0.0.1:9/mcp",
                    "secret_headers": {"X-Api-Key": "mcp-key-1"},
                },
                format="json",
            ).content
        )
        bodies.append(
            client.post(
                "/api/v1/t/acme/secrets/",
                {"name": "crm", "value": "very-secret-crm-token"},
                format="json",
            ).content
        )
        for url in (
            "providers/openai/",
            "tools/crm/",
            "mcp-servers/docs/",
            "secrets/crm/",
            "providers/",
            "tools/",
            "mcp-servers/",
            "secrets/",
        ):
            bodies.append(client.get(f"/api/v1/t/acme/{url}").content)
        bodies.append(
            client.patch(
                "/api/v1/t/acme/providers/openai/", {"api_key": None}, format="json"
            ).content
        )
        exported = b"".join(
            client.get("/api/v1/t/acme/audit-events/export/?format=jsonl").streaming_content
        )
        audit_text = " ".join(
            str((e.before, e.after, e.metadata)) for e in AuditEvent.objects.for_tenant(world.acme)
        )
        for value in self.SECRET_VALUES:
            assert all(value.encode() not in body for body in bodies), value
            assert value.encode() not in exported, value
            assert value not in audit_text, value
            assert value not in caplog.text, value
        provider = client.get("/api/v1/t/acme/providers/openai/").json()
        assert provider["has_api_key"] is True and "api_key" not in provider
        assert client.get("/api/v1/t/acme/tools/crm/").json()["secret_header_names"] == [
            "Authorization"
        ]

    def test_secrets_are_encrypted_at_rest(self, world):
        from django.db import connection

        make_secret(world.acme, name="plain", value="needle-in-the-database")
        make_provider(
            world.acme,
            slug="oa",
            kind="openai",
            api_key="sk-needle-provider-key",
            base_url="https://api.openai.com/v1",
        )
        with connection.cursor() as cursor:
            cursor.execute("SELECT value FROM agents_secret")
            stored = [row[0] for row in cursor.fetchall()]
            cursor.execute("SELECT api_key FROM agents_providerconnection")
            stored += [row[0] for row in cursor.fetchall()]
        assert stored and all("needle" not in value for value in stored)
        assert Secret.objects.for_tenant(world.acme).get(name="plain").value == (
            "needle-in-the-database"
        )
        assert ProviderConnection.objects.for_tenant(world.acme).get(slug="oa").api_key == (
            "sk-needle-provider-key"
        )


@pytest.mark.django_db
def test_registry_objects_are_disabled_not_deleted(world, api):
    make_agent(world.acme, slug="triage")
    response = api(world.alice, world.acme).delete("/api/v1/t/acme/agents/triage/")
    body = assert_error_shape(response, 405)
    assert "disabled" in body["errors"][0]["detail"]
    assert Agent.objects.for_tenant(world.acme).filter(slug="triage").exists()


class TestMcpServerTransport:
    def test_a_wrong_transport_names_the_valid_ones(self, world, api):
        body = assert_error_shape(
            api(world.alice, world.acme).post(
                "/api/v1/t/acme/mcp-servers/",
                {"slug": "m", "name": "M", "transport": "sse", "url": "http://127.0.0.1:9/mcp"},
                format="json",
            ),
            400,
        )
        [error] = body["errors"]
        assert error["attr"] == "transport"
        assert '"http"' in error["detail"] and '"stdio"' in error["detail"]

    def test_the_transport_follows_from_url_or_command_when_omitted(self, world, api):
        client = api(world.alice, world.acme)
        created = client.post(
            "/api/v1/t/acme/mcp-servers/",
            {"slug": "m", "name": "M", "url": "http://127.0.0.1:9/mcp"},
            format="json",
        )
        assert created.status_code == 201, created.content
        assert created.json()["transport"] == "http"
        body = assert_error_shape(
            client.post("/api/v1/t/acme/mcp-servers/", {"slug": "n", "name": "N"}, format="json"),
            400,
        )
        assert {e["attr"] for e in body["errors"]} == {"transport"}

    def test_the_transport_is_documented(self, world, api):
        schema = api(world.alice, world.acme).get("/api/v1/schema/?format=json")
        assert "MCP_STDIO_COMMANDS" in schema.content.decode()
