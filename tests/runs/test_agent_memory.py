"""Engine tools are granted explicitly and an agent's memory is visible and can be cleared.

* ``builtin_tools`` is validated; versions published before it existed keep the tools they
  ran with (the data migration); new agents get none.
* ``GET/DELETE /api/v1/t/<tenant>/agents/<slug>/memory/`` and ``DELETE .../memory/<key>/``:
  read, clear, forget one key; audited; viewer reads, only a role that may change the agent
  clears; another tenant's agent is a 404.
* The agent's dashboard page lists the memory and clears it.
* A policy naming ``memory_set`` can be saved (the engine's tool names are known names).
"""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps

from agents.models import Agent, AgentVersion
from controlplane import context
from controlplane.audit.models import AuditEvent
from policies import services as policies
from runs.models import AgentMemory
from tests.agents.registry_factories import make_agent, make_provider
from tests.api_mixins import assert_error_shape

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent(world):
    with context.tenant_context(world.acme):
        make_provider(world.acme, slug="sim", models=[{"name": "sim-1"}])
        agent = make_agent(
            world.acme,
            slug="rememberer",
            config={"provider": "sim", "model": "sim-1", "builtin_tools": ["memory"]},
        )
    for key, value in (("tier", "gold"), ("last/topic", {"about": "refunds"})):
        AgentMemory.objects.for_tenant(world.acme).create(
            tenant=world.acme, agent=agent, key=key, value=value
        )
    return agent


def _keys(agent):
    return sorted(AgentMemory.objects.for_tenant(agent.tenant_id).values_list("key", flat=True))


class TestAgentMemoryApi:
    covered_routes = {"api:agent-memory", "api:agent-memory-key"}
    url = "/api/v1/t/acme/agents/rememberer/memory/"

    def test_read(self, world, api, agent):
        body = api(world.bob, world.acme).get(self.url).json()
        rows = [(r["key"], r["value"]) for r in body["results"]]
        assert rows == [("last/topic", {"about": "refunds"}), ("tier", "gold")]

    def test_forget_one_key_then_clear(self, world, api, agent):
        client = api(world.alice, world.acme)

        forgot = client.delete(self.url + "last/topic/")
        again = client.delete(self.url + "last/topic/")

        assert forgot.status_code == 200 and forgot.json() == {"removed": ["last/topic"]}
        assert_error_shape(again, 404)
        assert _keys(agent) == ["tier"]
        cleared = client.delete(self.url)
        assert cleared.status_code == 200 and cleared.json() == {"removed": ["tier"]}
        assert _keys(agent) == []
        audit = AuditEvent.objects.for_tenant(world.acme).filter(action__startswith="agent.memory.")
        assert [(a.action, a.before) for a in audit.order_by("seq")] == [
            ("agent.memory.forget", {"keys": ["last/topic"]}),
            ("agent.memory.clear", {"keys": ["tier"]}),
        ]

    def test_viewer_and_operator_cannot_clear(self, world, api, agent):
        for user in (world.bob, world.oscar):  # viewer, operator
            client = api(user, world.acme)
            assert_error_shape(client.delete(self.url), 403)
            assert_error_shape(client.delete(self.url + "tier/"), 403)
        assert _keys(agent) == ["last/topic", "tier"]

    def test_another_tenants_agent_is_a_404(self, world, api, agent):
        client = api(world.alice, world.acme)
        assert_error_shape(client.get("/api/v1/t/globex/agents/rememberer/memory/"), 404)
        assert_error_shape(client.get("/api/v1/t/acme/agents/nobody/memory/"), 404)
        assert _keys(agent) == ["last/topic", "tier"]


class TestAgentPage:
    def test_lists_and_clears_the_memory(self, world, client, agent):
        client.force_login(world.alice)
        url = "/t/acme/agents/rememberer/memory/"
        body = client.get(url).content.decode()
        section = body.split('id="memory"')[1].split("</section>")[0]
        assert "<code>memory</code>" in section  # the current version's engine tools
        assert "<code>tier</code>" in section and "refunds" in section
        assert 'value="memory_clear"' in section

        forgot = client.post(url, {"op": "memory_forget", "key": "tier"})
        assert forgot.status_code == 302 and _keys(agent) == ["last/topic"]
        client.post(url, {"op": "memory_clear"})
        assert _keys(agent) == []
        body = client.get(url).content.decode()
        assert "rememberer remembers nothing." in body

    def test_a_viewer_reads_but_cannot_clear(self, world, client, agent):
        client.force_login(world.bob)
        url = "/t/acme/agents/rememberer/memory/"
        section = client.get(url).content.decode().split('id="memory"')[1]
        assert "<code>tier</code>" in section and 'value="memory_clear"' not in section
        assert client.post(url, {"op": "memory_clear"}).status_code == 403
        assert _keys(agent) == ["last/topic", "tier"]


class TestBuiltinToolsSetting:
    def test_an_unknown_group_is_refused_with_its_path(self, world, api, agent):
        response = api(world.alice, world.acme).post(
            "/api/v1/t/acme/agents/rememberer/publish/",
            {"config": {"provider": "sim", "model": "sim-1", "builtin_tools": ["shell"]}},
            format="json",
        )
        body = assert_error_shape(response, 400)
        assert any("builtin_tools" in (e["attr"] or "") for e in body["errors"]), body

    def test_existing_versions_keep_the_tools_they_ran_with(self, world, agent):
        with context.tenant_context(world.acme):
            before = make_agent(
                world.acme, slug="older", config={"provider": "sim", "model": "sim-1"}
            )
            explicit = make_agent(
                world.acme,
                slug="explicit",
                config={"provider": "sim", "model": "sim-1", "builtin_tools": []},
            )
            router = make_agent(
                world.acme,
                slug="router",
                kind="router",
                config={"mode": "rules", "rules": [], "default_route": "a"},
            )
        migration = importlib.import_module(
            "agents.migrations.0004_builtin_tools_for_existing_versions"
        )

        migration.grant_to_existing(apps, None)

        def config(agent):
            return AgentVersion.objects.for_tenant(world.acme).get(agent=agent).config

        assert config(before)["builtin_tools"] == ["context", "memory"]
        assert config(explicit)["builtin_tools"] == []
        assert config(agent)["builtin_tools"] == ["memory"]
        assert "builtin_tools" not in config(router)
        assert Agent.objects.for_tenant(world.acme).count() == 4

    def test_a_policy_may_name_an_engine_tool(self, world, agent):
        with context.system_context("tests", tenant=world.acme):
            policy = policies.policy_create(
                tenant=world.acme,
                slug="no-memory",
                name="No memory",
                definition={
                    "rules": [
                        {
                            "id": "forget",
                            "effect": "deny",
                            "actions": ["call_tool"],
                            "tools": ["memory_set"],
                        }
                    ]
                },
            )
        assert policy.pk
