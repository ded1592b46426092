"""Live updates in a real Chromium (``static/js/live.js`` over ``runs.consumers``): a run's page
and the runs list follow a run without a reload, and events emitted while the page's
websocket is down appear once it reconnects, each once and in order."""

from __future__ import annotations

import re

import pytest
from django.db import transaction
from playwright.sync_api import expect

from controlplane import context
from runs import services, workflow_services
from runs.events import emit
from runs.models import Run
from tests.agents.registry_factories import make_tool
from tests.browser.conftest import orm, shot
from tests.browser.test_login_flow import sign_in
from tests.browser.test_run_flow import no_reload_marker, still_same_document

pytestmark = [pytest.mark.browser]

RUN_MS = 60_000
LIVE = "Live: new events appear as they happen."


def _workflow(tenant, steps: int = 3):
    make_tool(tenant, slug="calc")
    with context.system_context("tests", tenant=tenant):
        return workflow_services.workflow_create(
            tenant=tenant,
            slug="sums",
            name="Sums",
            definition={
                "input_schema": {"type": "object"},
                "example_input": {},
                "steps": [
                    {
                        "id": f"s{i}",
                        "type": "tool",
                        "tool": "calc",
                        "arguments": {"expression": f"{i}+1"},
                    }
                    for i in range(steps)
                ],
            },
        )


def _start(tenant, workflow) -> int:
    with context.system_context("tests", tenant=tenant):
        run, _ = services.run_start(tenant=tenant, workflow=workflow, input={})
        return run.pk


def _emit(run_id: int, step: str) -> int:
    with transaction.atomic():
        run = Run.objects.unscoped().select_related("tenant").get(pk=run_id)
        return emit(run=run, type="step.started", step_key=step, payload={}).seq


def _shown_seqs(page) -> list[int]:
    ids = page.locator("#timeline-events li.event").evaluate_all("items => items.map(i => i.id)")
    return [int(i.split("-")[1]) for i in ids]


@pytest.mark.worker
def test_run_page_and_runs_list_follow_a_run_without_reload(
    world, start_celery_worker, page, live_url, request
):
    workflow = orm(lambda: _workflow(world.acme))
    run_id = orm(lambda: _start(world.acme, workflow))  # queued: no worker yet
    sign_in(page, live_url, "bob")  # a viewer follows runs too
    expect(page).to_have_url(f"{live_url}/t/acme/")

    # the runs list, in a tab of its own -------------------------------------------------------
    runs = page.context.new_page()
    runs.goto(f"{live_url}/t/acme/runs/")
    expect(runs.locator("#live-status")).to_have_text(
        "Live: statuses and progress update as runs change."
    )
    row = runs.locator(f'#runs tr[data-run="{run_id}"]')
    expect(row.locator('[data-cell="status"]')).to_have_text("Queued")
    expect(row.locator('[data-cell="progress"]')).to_have_text("0 of 3 steps")
    no_reload_marker(runs)

    # the run's page ---------------------------------------------------------------------------
    page.goto(f"{live_url}/t/acme/runs/{run_id}/")
    expect(page.locator("#live-status")).to_have_text(LIVE)
    expect(page.locator("#run-status")).to_have_text("Queued")
    expect(page.locator("#run-poller")).to_have_count(0)  # the socket replaced polling
    no_reload_marker(page)
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if "after=" in r.url else None)

    # what the status badge said at the moment the page announced the end
    page.evaluate(
        """() => {
            window.badgeAtEnd = null;
            const status = document.getElementById("live-status");
            new MutationObserver(() => {
                if (status.getAttribute("data-live") === "ended" && window.badgeAtEnd === null)
                    window.badgeAtEnd = document.getElementById("run-status").textContent;
            }).observe(status, {attributes: true, childList: true, characterData: true});
        }"""
    )
    start_celery_worker()
    timeline = page.locator("#timeline-events")
    expect(page.locator("#run-status")).to_contain_text("Succeeded", timeout=RUN_MS)
    expect(timeline).to_contain_text("Step s2 succeeded")
    expect(timeline).to_contain_text("Run succeeded")
    expect(page.locator("#progress-text")).to_have_text("3 of 3 steps finished (100%)")
    expect(page.locator("#live-status")).to_have_text("The run has ended: every event is shown.")
    assert "Succeeded" in page.evaluate("() => window.badgeAtEnd")  # never "ended" beside Running
    finished = orm(lambda: Run.objects.unscoped().get(pk=run_id))
    assert _shown_seqs(page) == list(range(1, finished.event_seq + 1))
    assert still_same_document(page) and polls == [], polls
    shot(page, request, "run-followed")

    expect(row.locator('[data-cell="status"]')).to_have_text("Succeeded")
    expect(row.locator('[data-cell="progress"]')).to_have_text("3 of 3 steps")
    expect(row.locator('[data-cell="took"]')).not_to_have_text("\u2013")
    # a new run shows up in the list, still without a reload
    second = orm(lambda: _start(world.acme, workflow))
    expect(runs.locator(f'#runs tr[data-run="{second}"]')).to_be_visible()
    expect(runs.locator(f'#runs tr[data-run="{second}"] [data-cell="status"]')).to_contain_text(
        re.compile("Queued|Running|Succeeded")
    )
    assert still_same_document(runs)
    shot(runs, request, "runs-list")


def test_events_emitted_while_the_socket_is_down_appear_after_it_reconnects(
    world, page, live_url, request
):
    workflow = orm(lambda: _workflow(world.acme, steps=1))
    run_id = orm(lambda: _start(world.acme, workflow))  # stays queued: no worker
    sockets: list[str] = []
    blocked = {"on": False}

    def route(ws):
        if blocked["on"]:
            ws.close()
            return
        sockets.append(ws.url)
        ws.connect_to_server()

    page.route_web_socket(re.compile(r"/ws/t/acme/runs/\d+/"), route)
    sign_in(page, live_url, "bob")
    expect(page).to_have_url(f"{live_url}/t/acme/")
    page.goto(f"{live_url}/t/acme/runs/{run_id}/")
    status = page.locator("#live-status")
    timeline = page.locator("#timeline-events")
    expect(status).to_have_text(LIVE)
    no_reload_marker(page)
    first = orm(lambda: _emit(run_id, "first"))
    expect(timeline).to_contain_text("Step first started")

    # the socket dies and cannot come back; the polling fallback is cut off too ---------------
    page.route(re.compile(r"[?&]after="), lambda r: r.abort())
    blocked["on"] = True
    page.evaluate("() => window.liveRun.socket.close()")
    expect(status).to_contain_text("Reconnecting to live updates")
    orm(lambda: _emit(run_id, "second"))
    orm(lambda: _emit(run_id, "third"))
    expect(status).to_contain_text("Meanwhile this page checks for new events every 1 s.")
    shot(page, request, "reconnecting")
    expect(timeline).not_to_contain_text("Step second started")

    # it reconnects by itself and asks for what it missed ---------------------------------------
    blocked["on"] = False
    expect(status).to_have_text(LIVE, timeout=30_000)
    expect(timeline).to_contain_text("Step third started")
    assert sockets[-1].endswith(f"?after={first}"), sockets
    last = orm(lambda: Run.objects.unscoped().get(pk=run_id).event_seq)
    assert _shown_seqs(page) == list(range(1, last + 1))
    assert still_same_document(page)
    # and goes on live
    orm(lambda: _emit(run_id, "fourth"))
    expect(timeline).to_contain_text("Step fourth started")
    assert _shown_seqs(page) == list(range(1, last + 2))
    shot(page, request, "reconnected")
