"""controlplane.entities: the audited write steps every registry service shares."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.core.exceptions import ValidationError

from agents.models import Agent, AgentVersion, ProviderConnection
from controlplane import context
from controlplane.audit.models import AuditEvent
from controlplane.entities import Entity, add_version, raise_at_paths, unique_slug
from tests.agents.registry_factories import make_agent, make_provider

PROVIDERS = Entity(
    ProviderConnection,
    "provider",
    fields=("slug", "name", "base_url"),
    clean_exclude=("api_key",),
    keep_when_none=("api_key",),
)


@pytest.fixture
def acme(world):
    with context.system_context("tests", tenant=world.acme):
        yield world


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


def test_raise_at_paths_groups_messages_under_their_path():
    errors = [
        SimpleNamespace(path="steps[0].agent", message="Unknown agent."),
        SimpleNamespace(path="steps[0].agent", message="Did you mean 'writer'?"),
        SimpleNamespace(path="", message="Give at least one step."),
    ]
    with pytest.raises(ValidationError) as caught:
        raise_at_paths(errors, under="definition")
    assert caught.value.message_dict == {
        "definition.steps[0].agent": ["Unknown agent.", "Did you mean 'writer'?"],
        "definition": ["Give at least one step."],
    }
    raise_at_paths([], under="definition")  # nothing wrong: no error


def test_a_slug_taken_in_the_tenant_is_refused_but_not_in_another(acme):
    make_provider(acme.acme, slug="sim")
    with pytest.raises(ValidationError) as caught:
        unique_slug(ProviderConnection, acme.acme, "sim")
    assert caught.value.message_dict == {
        "slug": ["Provider connection 'sim' already exists in this tenant."]
    }
    unique_slug(ProviderConnection, acme.globex, "sim")


def test_update_keeps_a_secret_given_as_none_and_audits_before_and_after(acme):
    provider = make_provider(
        acme.acme, slug="sim", kind="openai", base_url="http://127.0.0.1:9/v1", api_key="k-1"
    )
    updated = PROVIDERS.update(provider, {"name": "Renamed", "api_key": None})
    assert updated.name == "Renamed"
    assert ProviderConnection.objects.get(pk=provider.pk).api_key == "k-1"
    event = _events("provider.update")[-1]
    assert event.before["name"] != "Renamed"
    assert event.after["name"] == "Renamed"


def test_update_of_a_taken_slug_is_refused_and_writes_nothing(acme):
    make_provider(acme.acme, slug="one")
    two = make_provider(acme.acme, slug="two")
    with pytest.raises(ValidationError):
        PROVIDERS.update(two, {"slug": "one"})
    assert ProviderConnection.objects.get(pk=two.pk).slug == "two"


def test_an_update_that_changes_nothing_is_audited_only_when_asked(acme):
    provider = make_provider(acme.acme, slug="sim")
    before = len(_events("provider.update"))
    PROVIDERS.update(provider, {"name": provider.name}, audit_unchanged=False)
    assert len(_events("provider.update")) == before
    PROVIDERS.update(provider, {"name": provider.name})
    assert len(_events("provider.update")) == before + 1


def test_add_version_numbers_per_owner_and_moves_the_current_pointer(acme):
    agent = make_agent(acme.acme, slug="writer")
    first = agent.current_version.number
    version = add_version(
        AgentVersion,
        owner_field="agent",
        owner=agent,
        current_field="current_version",
        config=agent.current_version.config,
    )
    assert version.number == first + 1
    assert agent.current_version == version
    assert Agent.objects.get(pk=agent.pk).current_version_id == version.pk
    other = make_agent(acme.acme, slug="other")
    assert other.current_version.number == 1
