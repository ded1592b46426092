"""The navigation's approvals count follows requests as they open and close, without a reload:
alice (owner) keeps the overview open while a run asks for her decision and then is decided."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from controlplane import context
from runs import services
from runs.approvals.models import ApprovalRequest
from runs.approvals.services import approval_create, approval_decide
from runs.models import Workflow
from tests.browser.conftest import orm, shot
from tests.browser.test_login_flow import sign_in
from tests.browser.test_run_flow import demo, no_reload_marker, still_same_document  # noqa: F401

pytestmark = [pytest.mark.browser]


def test_the_approvals_count_updates_live(demo, world, page, live_url, request):  # noqa: F811
    sign_in(page, live_url, "alice")
    expect(page).to_have_url(f"{live_url}/t/acme/")
    nav = page.get_by_role("navigation", name="Tenant sections")
    count = nav.locator("#nav-approvals-count")
    expect(count).to_have_count(0)
    no_reload_marker(page)
    page.wait_for_timeout(500)  # the page's events socket is open before anything happens

    def ask() -> int:
        with context.system_context("tests", tenant=world.acme):
            workflow = Workflow.objects.for_tenant(world.acme).get(slug="support-ticket")
            run, _ = services.run_start(
                tenant=world.acme, workflow=workflow, input={"message": "Hi", "customer": "Fox"}
            )
            return approval_create(
                run=run,
                step_run=None,
                kind="approval",
                title="Refund 5 EUR?",
                required_role="admin",
            ).pk

    approval_id = orm(ask)
    expect(count).to_contain_text("1")
    assert still_same_document(page)
    shot(page, request, "one-waiting")

    def decide() -> None:
        with context.system_context("tests", tenant=world.acme):
            approval = ApprovalRequest.objects.for_tenant(world.acme).get(pk=approval_id)
            approval_decide(approval=approval, approve=True, user=None, access=None, comment="ok")

    orm(decide)
    expect(count).to_have_count(0)
    assert still_same_document(page)
