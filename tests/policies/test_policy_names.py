"""Policies name only agents, tools and models the tenant has (issue 12, item 6): a typo is
refused at save with the close names, in the API and inline in the dashboard editor, in
either mode; ``tag:``/``risk:`` matchers stay free; versions saved before an object went
away still activate and simulate."""

from __future__ import annotations

from unittest import mock

import pytest

from agents.models import Tool
from controlplane import context
from policies import services
from policies.definition import DEFAULT_DEFINITION, KnownNames, validate_names
from policies.demo import DEMO_POLICIES
from policies.models import Policy, PolicyVersion
from runs.execution import progress
from tests.agents.registry_factories import make_agent, make_provider, make_tool
from tests.api_mixins import assert_error_shape
from tests.dashboard.test_pages import client_for, text
from tests.dashboard.test_registry_pages import field_errors
from tests.policies.test_pages import detail_url

pytestmark = pytest.mark.django_db

URL = "/api/v1/t/acme/policies/"


@pytest.fixture(autouse=True)
def _no_broker():
    with mock.patch.object(progress, "dispatch"):
        yield


def rule(**matchers):
    return {"rules": [{"id": "r", "effect": "deny", **matchers}]}


def errors_of(response) -> dict[str, str]:
    assert_error_shape(response, 400)
    return {e["attr"]: e["detail"] for e in response.json()["errors"]}


def test_a_misspelt_tool_is_refused_with_the_close_name_and_nothing_is_saved(world, api):
    make_tool(world.acme, slug="no-such-tool")
    response = api(world.adam, world.acme).post(
        URL,
        {"slug": "typo", "name": "Typo", "definition": rule(tools=["no-such-tol"])},
        format="json",
    )
    assert errors_of(response) == {
        "definition.rules[0].tools[0]": (
            "No tool 'no-such-tol' in this tenant; did you mean 'no-such-tool'?"
        )
    }
    assert not Policy.objects.for_tenant(world.acme).filter(slug="typo").exists()


def test_agents_models_and_rate_limit_targets_are_checked_too(world, api):
    provider = make_provider(world.acme, models=[{"name": "gpt-4o-mini"}])
    make_agent(
        world.acme,
        slug="support-agent",
        provider=provider,
        config={"provider": provider.slug, "model": "gpt-4o-mini", "system_prompt": "Help."},
    )
    definition = {
        **rule(agents=["suport-agent"], models=["gpt-4o-mni"]),
        "rate_limits": [
            {"id": "a", "scope": "tool", "target": "refnd", "limit": 1, "per_seconds": 1},
            {"id": "b", "scope": "agent", "target": "*", "limit": 1, "per_seconds": 1},
        ],
    }
    response = api(world.adam, world.acme).post(
        URL, {"slug": "typo", "name": "Typo", "definition": definition}, format="json"
    )
    assert errors_of(response) == {
        "definition.rules[0].agents[0]": (
            "No agent 'suport-agent' in this tenant; did you mean 'support-agent'?"
        ),
        "definition.rules[0].models[0]": (
            "No model 'gpt-4o-mni' in this tenant; did you mean 'gpt-4o-mini'?"
        ),
        "definition.rate_limits[0].target": (
            "No tool 'refnd' in this tenant; did you mean 'refund'?"
        ),
    }


def test_names_that_exist_tags_risks_and_wildcards_are_accepted(world, api):
    provider = make_provider(world.acme, models=[{"name": "gpt-4o-mini"}])
    make_agent(
        world.acme,
        slug="support-agent",
        provider=provider,
        config={"provider": provider.slug, "model": "gpt-4o-mini", "system_prompt": "Help."},
    )
    definition = {
        "rules": [
            {
                "id": "r",
                "effect": "deny",
                "agents": ["support-agent", "tag:anything"],
                "tools": ["refund", "tag:payments", "risk:destructive"],
                "models": ["gpt-4o-mini"],
            }
        ],
        "rate_limits": [
            {"id": "a", "scope": "tool", "target": "refund", "limit": 1, "per_seconds": 1},
            {"id": "b", "scope": "tool", "target": "*", "limit": 1, "per_seconds": 1},
        ],
    }
    response = api(world.adam, world.acme).post(
        URL, {"slug": "ok", "name": "OK", "definition": definition}, format="json"
    )
    assert response.status_code == 201, response.content


def test_another_tenants_tool_is_not_a_name_here(world, api):
    make_tool(world.globex, slug="globex-only")
    response = api(world.adam, world.acme).post(
        URL, {"slug": "x", "name": "X", "definition": rule(tools=["globex-only"])}, format="json"
    )
    detail = errors_of(response)["definition.rules[0].tools[0]"]
    assert detail.startswith("No tool 'globex-only' in this tenant; its tools are: ")
    assert "globex-only" not in detail.split(": ", 1)[1]


def test_log_only_policies_are_refused_as_well(world, api):
    response = api(world.adam, world.acme).post(
        URL,
        {"slug": "trial", "name": "Trial", "mode": "log_only", "definition": rule(tools=["refnd"])},
        format="json",
    )
    assert "definition.rules[0].tools[0]" in errors_of(response)


def test_a_new_version_is_checked_but_old_versions_still_activate_and_simulate(world, api):
    make_tool(world.acme, slug="old-tool")
    with context.system_context("tests", tenant=world.acme):
        policy = services.policy_create(
            tenant=world.acme, slug="guard", name="Guard", definition=rule(tools=["old-tool"])
        )
        services.policy_save_version(policy=policy, definition={"rules": []})
    Tool.objects.for_tenant(world.acme).filter(slug="old-tool").delete()
    client = api(world.adam, world.acme)

    refused = client.post(
        f"{URL}guard/versions/", {"definition": rule(tools=["old-tool"])}, format="json"
    )
    detail = errors_of(refused)["definition.rules[0].tools[0]"]
    assert detail.startswith("No tool 'old-tool' in this tenant")
    assert PolicyVersion.objects.for_tenant(world.acme).filter(policy=policy).count() == 2

    activated = client.post(f"{URL}guard/activate/", {"version": 2}, format="json")
    assert activated.status_code == 200, activated.content
    rolled_back = client.post(f"{URL}guard/activate/", {"version": 1}, format="json")
    assert rolled_back.status_code == 200, rolled_back.content
    simulated = client.post(f"{URL}guard/simulate/", {"version": 2}, format="json")
    assert simulated.status_code == 200, simulated.content


def test_the_editor_shows_the_error_inline(world):
    make_tool(world.acme, slug="no-such-tool")
    with context.system_context("tests", tenant=world.acme):
        policy = services.policy_create(
            tenant=world.acme, slug="guard", name="Guard", definition={"rules": []}
        )
    response = client_for(world.adam).post(
        detail_url(policy),
        {
            "op": "save",
            "definition": '{"rules": [{"id": "r", "effect": "deny", "tools": ["no-such-tol"]}]}',
        },
    )
    assert response.status_code == 400
    assert field_errors(text(response), "definition") == [
        "rules[0].tools[0]: No tool 'no-such-tol' in this tenant; did you mean 'no-such-tool'?"
    ]
    assert PolicyVersion.objects.for_tenant(world.acme).filter(policy=policy).count() == 1


def test_the_default_and_demo_policies_name_nothing_a_tenant_may_lack():
    nothing = KnownNames()
    assert validate_names(DEFAULT_DEFINITION, nothing) == []
    for spec in DEMO_POLICIES:
        assert validate_names(spec["definition"], nothing) == [], spec["slug"]


def test_the_editors_example_saves_as_is_with_or_without_tools():
    from policies.forms import definition_example

    assert validate_names(definition_example(None), KnownNames()) == []
    assert validate_names(definition_example("calc"), KnownNames(tools=frozenset({"calc"}))) == []
