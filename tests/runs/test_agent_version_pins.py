"""A run pins the versions of its agents when it starts (``Run.agent_versions``).

On a real worker: a version published while the run waits does not reach its later steps;
a rerun runs the same versions or the current ones, as asked (API and dashboard); a resume
keeps the pins.
"""

from __future__ import annotations

import pytest

from agents.models import Agent
from agents.services.agents import agent_publish
from controlplane import context
from runs import services
from runs.models import Run, StepRun
from runs.pins import agent_slugs
from tests.agents.registry_factories import make_agent, make_provider
from tests.api_mixins import assert_error_shape
from tests.runs.conftest import wait_for_run
from tests.runs.test_engine import _approval, _decide, _start, _workflow


@pytest.fixture
def acme(world):
    with context.tenant_context(world.acme):
        make_provider(world.acme, slug="sim", models=[{"name": "sim-1"}])
        yield world


def _gated_writer(world):
    """A workflow whose agent step runs after an approval: time to publish meanwhile."""
    make_agent(
        world.acme,
        slug="writer",
        config={"provider": "sim", "model": "sim-1", "system_prompt": "Version one."},
    )
    return _workflow(
        world,
        "gated",
        [
            {"id": "gate", "type": "approval", "title": "Go?"},
            {"id": "write", "type": "agent", "agent": "writer"},
        ],
    )


def _publish_v2(world):
    agent = Agent.objects.for_tenant(world.acme).get(slug="writer")
    with context.system_context("tests", tenant=world.acme):
        return agent_publish(
            agent=agent,
            config={"provider": "sim", "model": "sim-1", "system_prompt": "Version two."},
        )


def _ran(world, run) -> int:
    """The version number the run's ``write`` step ran, once the run ended."""
    _decide(world, _approval(run))
    run = wait_for_run(run)
    assert run.status == "succeeded", run.status_reason
    step = StepRun.objects.unscoped().select_related("agent_version").get(run=run, step_key="write")
    return step.agent_version.number


def test_a_version_published_during_the_run_does_not_reach_it(acme, worker):
    world = acme
    run = _start(world, _gated_writer(world))
    v1 = Agent.objects.for_tenant(world.acme).get(slug="writer").current_version
    assert Run.objects.unscoped().get(pk=run.pk).agent_versions == {"writer": v1.pk}
    _approval(run)  # the run waits at the gate
    v2 = _publish_v2(world)

    assert _ran(world, run) == 1

    with context.system_context("tests", tenant=world.acme):
        same = services.run_rerun(run=run)
        current = services.run_rerun(run=run, versions="current")
    assert same.agent_versions == {"writer": v1.pk}
    assert current.agent_versions == {"writer": v2.pk}
    assert _ran(world, same) == 1
    assert _ran(world, current) == 2


def test_a_resume_keeps_the_pins(acme, worker):
    world = acme
    make_agent(
        world.acme,
        slug="writer",
        config={"provider": "sim", "model": "sim-1", "system_prompt": "SIMULATE call x {oops"},
    )
    wf = _workflow(world, "broken", [{"id": "write", "type": "agent", "agent": "writer"}])
    run = wait_for_run(_start(world, wf))
    assert run.status == "failed" and "script line" in run.status_reason
    v1 = Agent.objects.for_tenant(world.acme).get(slug="writer").current_version
    _publish_v2(world)  # a version that would succeed; the run still pins v1

    with context.system_context("tests", tenant=world.acme):
        services.run_resume(run=run)
    run = wait_for_run(run)
    assert run.resume_count == 1
    assert run.status == "failed" and "script line" in run.status_reason
    assert run.agent_versions == {"writer": v1.pk}


def test_agent_slugs_cover_every_place_a_definition_names_an_agent():
    definition = {
        "steps": [
            {"id": "a", "type": "agent", "agent": "one", "on_error": {"fallback": "two"}},
            {"id": "r", "type": "router", "agent": "router", "routes": {}},
            {
                "id": "p",
                "type": "parallel",
                "branches": [{"name": "x", "agent": "three"}, {"name": "y", "agent": "one"}],
                "merge": {"agent": "merger"},
            },
            {"id": "f", "type": "parallel", "for_each": "{{ input.items }}", "agent": "each"},
            {"id": "m", "type": "manager", "agent": "boss", "delegates": ["d1", "d2"]},
            {"id": "h", "type": "handoff", "agents": ["h1", "h2"], "start": "h1"},
            {"id": "l", "type": "loop", "agent": "looper", "max_iterations": 2},
            {"id": "t", "type": "tool", "tool": "calc"},
        ]
    }
    assert agent_slugs(definition) == [
        "one",
        "two",
        "router",
        "three",
        "merger",
        "each",
        "boss",
        "d1",
        "d2",
        "h1",
        "h2",
        "looper",
    ]


@pytest.mark.django_db
class TestRerunChoice:
    """The API and the dashboard offer the choice; the run shows its pins."""

    @pytest.fixture
    def pinned(self, world, monkeypatch):
        from runs.execution import progress

        monkeypatch.setattr(progress, "dispatch", lambda *a, **k: None)  # API only: no worker
        with context.tenant_context(world.acme):
            make_provider(world.acme, slug="sim", models=[{"name": "sim-1"}])
            run = _start(world, _gated_writer(world))
            _publish_v2(world)
        return run

    def test_api(self, world, api, pinned):
        client = api(world.alice, world.acme)
        base = f"/api/v1/t/acme/runs/{pinned.pk}/"
        detail = client.get(base).json()
        assert detail["agent_versions"] == [{"agent": "writer", "version": 1, "current": False}]

        same = client.post(base + "rerun/", {}, format="json")
        current = client.post(base + "rerun/", {"versions": "current"}, format="json")
        bad = client.post(base + "rerun/", {"versions": "newest"}, format="json")

        assert same.status_code == current.status_code == 201
        pins = {
            r.pk: r.agent_versions
            for r in Run.objects.unscoped().filter(pk__in=[same.json()["id"], current.json()["id"]])
        }
        versions = dict(
            Agent.objects.for_tenant(world.acme)
            .filter(slug="writer")
            .values_list("slug", "current_version_id")
        )
        assert pins[same.json()["id"]] == pinned.agent_versions
        assert pins[current.json()["id"]] == versions
        assert_error_shape(bad, 400, attr="versions")

    def test_dashboard(self, world, client, pinned):
        client.force_login(world.alice)
        url = f"/t/acme/runs/{pinned.pk}/"
        body = client.get(url).content.decode()
        pins = body.split('id="agent-versions"')[1].split("</section>")[0]
        assert "writer" in pins and "v1" in pins and "another version is current" in pins
        form = body.split('id="rerun"')[1].split("</form>")[0]
        assert 'name="versions" value="same" checked' in form
        assert 'name="versions" value="current"' in form

        bad = client.post(url, {"op": "rerun", "versions": "newest", "input-message": "hi"})
        assert bad.status_code == 400
        assert "Choose the same agent versions or the current ones." in bad.content.decode()
        assert Run.objects.unscoped().count() == 1

        response = client.post(url, {"op": "rerun", "versions": "current", "input-message": "hi"})
        assert response.status_code == 302
        rerun = Run.objects.unscoped().get(rerun_of=pinned)
        assert rerun.agent_versions != pinned.agent_versions
        assert rerun.agent_versions["writer"] == (
            Agent.objects.for_tenant(world.acme).get(slug="writer").current_version_id
        )
