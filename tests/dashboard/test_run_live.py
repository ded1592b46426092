"""What the run pages give ``static/js/live.js``: the websocket paths, the rows it updates and
the run's state block alone (``?state``)."""

from __future__ import annotations

from unittest import mock

import pytest
from django.urls import reverse

from controlplane import context
from runs import services, workflow_services
from runs.execution import progress
from runs.models import Run
from tests.agents.registry_factories import make_tool
from tests.dashboard.test_pages import client_for, text

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(world) -> Run:
    make_tool(world.acme, slug="calc")
    with (
        context.system_context("tests", tenant=world.acme),
        mock.patch.object(progress, "dispatch"),
    ):
        workflow = workflow_services.workflow_create(
            tenant=world.acme,
            slug="sums",
            name="Sums",
            definition={
                "input_schema": {"type": "object"},
                "example_input": {},
                "steps": [
                    {"id": "add", "type": "tool", "tool": "calc", "arguments": {"expression": "1"}}
                ],
            },
        )
        run, _ = services.run_start(tenant=world.acme, workflow=workflow, input={})
        return run


def run_url(run: Run) -> str:
    return reverse("dashboard:run-detail", kwargs={"tenant": "acme", "pk": run.pk})


def test_an_active_runs_page_follows_its_websocket(world, run):
    body = text(client_for(world.bob).get(run_url(run)))
    assert f'data-live-run="/ws/t/acme/runs/{run.pk}/"' in body
    assert f'data-live-state="/t/acme/runs/{run.pk}/?state=1"' in body
    assert 'id="live-status" role="status"' in body
    assert 'src="/static/js/live.js" defer' in body
    assert 'id="run-poller"' in body  # the fallback, taken out by the script while it is live


def test_an_ended_runs_page_has_nothing_to_follow(world, run):
    with context.system_context("tests", tenant=world.acme):
        services.run_cancel(run=run, reason="enough")
    body = text(client_for(world.bob).get(run_url(run)))
    assert "data-live-run" not in body and 'id="live-status"' not in body


def test_state_fragment_is_the_state_block_alone(world, run):
    response = client_for(world.bob).get(run_url(run), {"state": "1"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = text(response)
    assert "<html" not in body and 'id="timeline-events"' not in body
    assert '<span class="badge status-queued">Queued</span>' in body
    assert "0 of 1 steps finished (0%)" in body


def test_state_fragment_of_another_tenants_run_is_404(world, run):
    client = client_for(world.charlie)
    response = client.get(run_url(run), {"state": "1"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 404
    other = f"/t/globex/runs/{run.pk}/"
    assert client.get(other, {"state": "1"}, HTTP_HX_REQUEST="true").status_code == 404


def test_runs_list_rows_carry_what_the_socket_updates(world, run):
    body = text(client_for(world.bob).get(reverse("dashboard:runs", kwargs={"tenant": "acme"})))
    assert 'data-live-runs="/ws/t/acme/runs/"' in body
    seq = Run.objects.unscoped().get(pk=run.pk).event_seq
    assert seq > 0 and f'<tr data-run="{run.pk}" data-seq="{seq}">' in body
    for cell in ("status", "progress", "took", "tokens", "cost"):
        assert f'data-cell="{cell}"' in body
