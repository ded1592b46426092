"""Access to runs from a real browser: vera (viewer) sees a run without any write button and
a forged cancel is refused with 403; a websocket opened from another tenant's session to
acme's run is refused exactly like a missing run, while acme's own member is let in."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from runs.models import Run, Workflow
from tests.browser.conftest import orm, shot
from tests.browser.test_login_flow import sign_in
from tests.browser.test_run_flow import demo  # noqa: F401

pytestmark = [pytest.mark.browser]

OPEN_SOCKET_JS = """async (path) => {
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  return await new Promise((resolve) => {
    const socket = new WebSocket(url);
    const timer = setTimeout(() => resolve({code: "timeout"}), 10000);
    socket.onmessage = (message) => { clearTimeout(timer); socket.close(); resolve({code: "open",
      first: JSON.parse(message.data)}); };
    socket.onclose = (event) => { clearTimeout(timer); resolve({code: event.code}); };
  });
}"""


@pytest.fixture
def queued_run(demo, world):  # noqa: F811
    from controlplane import context
    from runs import services

    def start():
        with context.system_context("tests", tenant=world.acme):
            workflow = Workflow.objects.for_tenant(world.acme).get(slug="support-ticket")
            run, _ = services.run_start(
                tenant=world.acme, workflow=workflow, input={"message": "Hi", "customer": "Fox"}
            )
            return run.pk

    return start()


def test_vera_reads_a_run_but_cannot_change_it(queued_run, page, live_url, request):
    sign_in(page, live_url, "vera")
    expect(page).to_have_url(f"{live_url}/t/acme/")
    page.goto(f"{live_url}/t/acme/runs/{queued_run}/")
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Run #{queued_run}")
    for name in ("Cancel run", "Resume", "Start a new run with this input"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    shot(page, request, "viewer-run")

    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    response = page.request.post(
        f"{live_url}/t/acme/runs/{queued_run}/",
        form={"op": "cancel", "csrfmiddlewaretoken": csrf},
        headers={"X-CSRFToken": csrf, "Referer": f"{live_url}/t/acme/runs/{queued_run}/"},
    )
    assert response.status == 403
    assert orm(lambda: Run.objects.unscoped().get(pk=queued_run).status) == "queued"


def test_a_websocket_to_another_tenants_run_is_refused_like_a_missing_one(
    queued_run, page, live_url, request
):
    sign_in(page, live_url, "charlie")  # globex's owner
    expect(page).to_have_url(f"{live_url}/t/globex/")
    # acme's run asked for under charlie's own tenant: the same 4404 as a run that never was
    foreign = page.evaluate(OPEN_SOCKET_JS, f"/ws/t/globex/runs/{queued_run}/")
    missing = page.evaluate(OPEN_SOCKET_JS, "/ws/t/globex/runs/999999/")
    assert foreign == missing == {"code": 4404}
    # under acme's URL: refused as for a tenant that does not exist
    acme = page.evaluate(OPEN_SOCKET_JS, f"/ws/t/acme/runs/{queued_run}/")
    nowhere = page.evaluate(OPEN_SOCKET_JS, f"/ws/t/no-such-tenant/runs/{queued_run}/")
    assert acme == nowhere == {"code": 4403}
    assert page.evaluate(OPEN_SOCKET_JS, "/ws/t/acme/runs/") == {"code": 4403}


def test_acmes_own_viewer_is_let_in(queued_run, page, live_url):
    sign_in(page, live_url, "vera")
    expect(page).to_have_url(f"{live_url}/t/acme/")
    opened = page.evaluate(OPEN_SOCKET_JS, f"/ws/t/acme/runs/{queued_run}/")
    assert opened["code"] == "open", opened
    last_seq = orm(lambda: Run.objects.unscoped().get(pk=queued_run).event_seq)
    assert opened["first"]["kind"] == "run.synced"
    assert opened["first"]["seq"] == last_seq
