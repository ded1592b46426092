"""Every dashboard page in a real Chromium, checked and photographed.

One object of every kind is committed (an agent with two versions and a granted tool, a
discovered MCP server, a provider, a secret, a knowledge document, a workflow, a finished
run, a run waiting for its approval, a decided approval, a policy with two versions,
recorded decisions, an API token and the audit rows all of that wrote). Then, in one
browser session per member:

- alice (owner) opens every page at 1280x800, at 820x1180 (a tablet: narrow table columns)
  and at 390x844;
- bob (viewer) opens every page at 1280x800: the pages a viewer may read, and the
  audited 403 of the others.

Each visit checks: the expected status (200, or 403 where bob's role is below the page's
read role in its page tests), one visible main heading, no JavaScript error, no failed
same-origin static asset, every status or badge element says its state in words (not a
colour or an icon alone), no horizontal overflow at phone width, for bob no form or
button that writes and no link to a page his role cannot open; and a full-page screenshot
under test-artifacts/ whose PNG header has the viewport's width. Every problem of every
page is reported at once.

``PAGES`` maps every URL name of the dashboard namespace to the URLs to open: a URL name
missing from it fails the test, naming it, so a new page cannot go unchecked.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from agents.services.agents import agent_publish
from agents.services.tools import tool_grant_create
from agents.tools.mcp_client import DiscoveredTool
from agents.tools.mcp_services import _record as record_discovery
from controlplane import context
from controlplane.rbac.access import resolve_access
from controlplane.tenancy.choices import Role
from runs.approvals import services as approval_services
from runs.choices import RunStatus, StepStatus
from runs.events import emit
from runs.models import Run, StepRun
from tests.agents.registry_factories import (
    make_agent,
    make_document,
    make_mcp_server,
    make_provider,
    make_secret,
    make_tool,
)
from tests.browser.conftest import shot
from tests.browser.test_login_flow import PHONE, fits_width, sign_in
from tests.dashboard.test_pages import _dashboard_url_names, _page_test_classes, issue_token
from tests.dashboard.test_run_pages import make_waiting, make_workflow, record_calls, start_run
from tests.policies.test_pages import REFUND_RULE, make_policy, record, save_draft

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 800}
TABLET = {"width": 820, "height": 1180}  # table columns are narrowest here
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_SHOT_HEIGHT = 40_000  # a page longer than this is broken, not long


# the objects the pages are about -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Objects:
    finished_run: int
    waiting_run: int
    approval: int
    decided_approval: int
    document: int


def _finish(run: Run) -> None:
    """What a worker leaves behind a run that went well: every step and the run succeeded."""
    tenant = run.tenant
    now = timezone.now()
    steps = StepRun.objects.for_tenant(tenant).filter(run=run)
    with context.system_context("tests", tenant=tenant):
        emit(run=run, type="run.started", payload={})
        for step in steps:
            emit(
                run=run,
                type="step.succeeded",
                step_key=step.step_key,
                payload={"output": {"approved": True}, "duration_ms": 1200},
            )
        steps.update(status=StepStatus.SUCCEEDED, attempt=1, started_at=now, finished_at=now)
        Run.objects.for_tenant(tenant).filter(pk=run.pk).update(
            status=RunStatus.SUCCEEDED,
            started_at=now,
            finished_at=now,
            output={"refunded": 120, "currency": "EUR"},
            input_tokens=1234,
            output_tokens=321,
            cost_usd="0.004200",
        )
        run.refresh_from_db()
        emit(run=run, type="run.succeeded", payload={"output": run.output})


@pytest.fixture
def every_object(live_url, world) -> Objects:
    """One of everything in acme, committed before the browser starts.

    No worker runs here, so no step is dispatched (nobody would run it): runs are put
    where a worker would leave them.
    """
    acme = world.acme
    with (
        mock.patch("runs.execution.progress.dispatch"),
        context.system_context("tests", tenant=acme),
    ):
        provider = make_provider(acme, slug="sim")
        agent = make_agent(acme, slug="triage", provider=provider, tags=["support"])
        calc = make_tool(acme, slug="calc")
        tool_grant_create(tool=calc, agent=agent)
        agent_publish(
            agent=agent,
            config={
                "provider": "sim",
                "model": "sim-1",
                "system_prompt": "You triage support tickets and answer in one paragraph.",
                "temperature": 0.4,
            },
            note="pins calc",
            created_by=world.alice,
        )
        server = make_mcp_server(acme, slug="docs-mcp")
        record_discovery(
            server,
            [
                DiscoveredTool(
                    name="search_pages",
                    description="Full-text search over the documentation.",
                    input_schema={"type": "object", "properties": {"q": {"type": "string"}}},
                    output_schema=None,
                    annotations={"readOnlyHint": True},
                ),
                DiscoveredTool(
                    name="delete_page",
                    description="Delete a documentation page.",
                    input_schema={"type": "object", "properties": {"id": {"type": "integer"}}},
                    output_schema=None,
                    annotations={"destructiveHint": True},
                ),
            ],
        )
        make_secret(acme, "support-api-key")
        document = make_document(acme)

        workflow = make_workflow(acme, tags=["billing"])
        finished = start_run(acme, workflow, user=world.oscar)
        _finish(finished)
        waiting = start_run(acme, workflow, user=world.oscar)
        approval = make_waiting(waiting)
        record_calls(waiting)
        decided_run = start_run(acme, workflow, user=world.oscar)
        decided = make_waiting(decided_run)
        approval_services.approval_decide(
            approval=decided,
            approve=True,
            user=world.alice,
            access=resolve_access(user=world.alice, tenant_slug="acme"),
            comment="refund is within policy",
        )

        policy = make_policy(acme)  # v1 applies
        save_draft(policy, {"rules": [REFUND_RULE, {**REFUND_RULE, "id": "huge"}]}, note="v2")
        for amount, effect in ((50, "allow"), (150, "require_approval"), (9000, "deny")):
            record(
                acme,
                run=waiting,
                tool="refund",
                agent="billing-support",
                args={"amount": amount},
                effect=effect,
            )
        issue_token(acme, world.bob, "ci-pipeline")
    return Objects(
        finished_run=finished.pk,
        waiting_run=waiting.pk,
        approval=approval.pk,
        decided_approval=decided.pk,
        document=document.pk,
    )


# what to open for every URL name ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Page:
    """One URL of a URL name: its arguments (besides the tenant) and a query string."""

    label: str
    kwargs: Callable[[Objects], dict[str, Any]] = lambda o: {}
    query: str = ""


def one(label: str, **kwargs: Any) -> list[Page]:
    return [Page(label, lambda o: kwargs)]


# Every URL name of the dashboard namespace. None: not a page (a POST-only action).
PAGES: dict[str, list[Page] | None] = {
    "dashboard:home": one("home"),  # alice's only tenant: her overview
    "dashboard:login": one("login"),  # opened signed out, see sign_in_checked
    "dashboard:logout": None,  # POST only: the "Sign out" form of every page
    "dashboard:invitations": None,  # POST only: Accept / Decline on the home page
    "dashboard:overview": one("overview"),
    "dashboard:members": one("members"),
    "dashboard:tokens": one("tokens"),
    "dashboard:audit": one("audit"),
    "dashboard:agents": one("agents"),
    "dashboard:agent-create": one("agent-create"),
    "dashboard:agent-detail": [
        Page("agent", lambda o: {"slug": "triage"}),
        Page("agent-diff", lambda o: {"slug": "triage"}, "?from=1&to=2"),
    ],
    "dashboard:agent-edit": one("agent-edit", slug="triage"),
    "dashboard:agent-memory": one("agent-memory", slug="triage"),
    "dashboard:tools": one("tools"),
    "dashboard:tool-create": one("tool-create"),
    "dashboard:tool-detail": [
        Page("tool", lambda o: {"slug": "calc"}),
        Page("tool-mcp", lambda o: {"slug": "docs-mcp-delete-page"}),
    ],
    "dashboard:tool-edit": one("tool-edit", slug="calc"),
    "dashboard:providers": one("providers"),
    "dashboard:provider-create": one("provider-create"),
    "dashboard:provider-detail": one("provider", slug="sim"),
    "dashboard:provider-edit": one("provider-edit", slug="sim"),
    "dashboard:mcp-servers": one("mcp-servers"),
    "dashboard:mcp-server-create": one("mcp-server-create"),
    "dashboard:mcp-server-detail": one("mcp-server", slug="docs-mcp"),
    "dashboard:mcp-server-edit": one("mcp-server-edit", slug="docs-mcp"),
    "dashboard:secrets": one("secrets"),
    "dashboard:secret-detail": one("secret", name="support-api-key"),
    "dashboard:knowledge": one("knowledge"),
    "dashboard:knowledge-create": one("knowledge-create"),
    "dashboard:knowledge-detail": [Page("document", lambda o: {"pk": o.document})],
    "dashboard:workflows": one("workflows"),
    "dashboard:workflow-create": one("workflow-create"),
    "dashboard:workflow-detail": one("workflow", slug="refunds"),
    "dashboard:workflow-start": one("workflow-start", slug="refunds"),
    "dashboard:runs": one("runs"),
    "dashboard:run-detail": [
        Page("run-finished", lambda o: {"pk": o.finished_run}),
        Page("run-waiting", lambda o: {"pk": o.waiting_run}),
    ],
    "dashboard:policies": one("policies"),
    "dashboard:policy-create": one("policy-create"),
    "dashboard:policy-decisions": one("policy-decisions"),
    "dashboard:policy-detail": [
        Page("policy", lambda o: {"slug": "refund-guard"}),
        Page("policy-diff", lambda o: {"slug": "refund-guard"}, "?from=1&to=2"),
    ],
    "dashboard:policy-simulate": [
        Page("policy-simulate", lambda o: {"slug": "refund-guard"}, "?version=2&limit=200")
    ],
    "dashboard:approvals": one("approvals"),
    "dashboard:approval-detail": [
        Page("approval-pending", lambda o: {"pk": o.approval}),
        Page("approval-decided", lambda o: {"pk": o.decided_approval}),
    ],
}
OUTSIDE_TENANT = {"dashboard:home", "dashboard:login", "dashboard:logout", "dashboard:invitations"}


def unmapped_url_names() -> list[str]:
    return sorted(set(_dashboard_url_names()) - set(PAGES))


def viewer_may_read() -> dict[str, bool]:
    """URL name -> whether a viewer may open it, as its page tests declare (``read_role``)."""
    found: dict[str, bool] = {}
    for cls in _page_test_classes():
        for name in cls.covered_url_names():
            found[name] = cls.read_role == Role.VIEWER
    return found


@dataclasses.dataclass(frozen=True)
class Visit:
    name: str  # the URL name
    label: str  # names the screenshot
    path: str


def visits(objects: Objects) -> list[Visit]:
    out = []
    for name, pages in PAGES.items():
        if pages is None or name == "dashboard:login":
            continue
        for page in pages:
            kwargs = page.kwargs(objects)
            if name not in OUTSIDE_TENANT:
                kwargs = {"tenant": "acme", **kwargs}
            out.append(Visit(name, page.label, reverse(name, kwargs=kwargs) + page.query))
    return out


# the checks ----------------------------------------------------------------------------------

# Elements saying a state (status-*, badges, live status): each must say it in words.
WORDLESS_BADGES_JS = """() => {
  const out = [];
  for (const el of document.querySelectorAll('[class*="status"], [class*="badge"]')) {
    if (!el.checkVisibility({visibilityProperty: true})) continue;
    if (!el.innerText.trim()) out.push(`${el.tagName.toLowerCase()}.${el.className}`);
  }
  return out;
}"""

# A badge, a status or a one-word code value split across lines ("call_too/l",
# "risk:destru/ctive", "✓/Succeeded") reads as two words: each must sit on one line.
SPLIT_WORDS_JS = """() => {
  const out = [];
  const selector = '.badge, [class*="status-"], td code, th code, dd code, li code';
  for (const el of document.querySelectorAll(selector)) {
    if (!el.checkVisibility({visibilityProperty: true})) continue;
    const text = el.innerText.trim();
    if (!text || /\\s/.test(text) || text.length > 40) continue;  // one word, not a sentence
    const range = document.createRange();
    range.selectNodeContents(el);
    const lines = new Set(Array.from(range.getClientRects(), r => Math.round(r.top)));
    if (lines.size > 1) out.push(`${el.tagName.toLowerCase()} "${text}"`);
  }
  return out;
}"""

# Django's placeholder for an empty choice says nothing to a person.
DASH_CHOICES_JS = """() => Array.from(document.querySelectorAll("select option"))
  .filter(o => /^-{3,}$/.test(o.textContent.trim()))
  .map(o => o.closest("select").name || o.closest("select").id)"""

# Button names of the writes (GET forms name theirs "Filter", "Show changes" ...).
WRITE_WORDS = """publish activate delete cancel approve deny revoke disable enable roll.?back
resume rerun run.again grant remove save discover test.connection start create add new edit send
forget clear"""
WRITE_NAME = r"\b(" + "|".join(WRITE_WORDS.split()) + r")\b"  # a JavaScript RegExp, any case

# What a viewer must not be offered: a form that POSTs (but signing out), an htmx write,
# a button named after a write, or a link to a page that his role cannot open.
WRITES_JS = """(writeName) => {
  const words = new RegExp(writeName, "i");
  const forbidden = /\\/(new|edit|start|simulate)\\/$|^\\/t\\/[^/]+\\/tokens\\/$/;
  const shown = el => el.checkVisibility({visibilityProperty: true});
  const signOut = el => el.closest('form[action="/logout/"]') !== null;
  const out = [];
  for (const form of document.querySelectorAll("form")) {
    if ((form.getAttribute("method") || "get").toLowerCase() !== "post" || signOut(form)) continue;
    out.push(`form posting to ${new URL(form.action, location.href).pathname}`);
  }
  for (const el of document.querySelectorAll("[hx-post], [hx-put], [hx-patch], [hx-delete]")) {
    out.push(`htmx write ${el.tagName.toLowerCase()}#${el.id}`);
  }
  for (const el of document.querySelectorAll('button, input[type="submit"], a.button')) {
    const name = (el.innerText || el.value || "").trim();
    if (shown(el) && !signOut(el) && words.test(name)) out.push(`button "${name}"`);
  }
  for (const a of document.querySelectorAll("a[href]")) {
    if (a.getAttribute("href").startsWith("#")) continue;  // the skip link, anchors
    const url = new URL(a.href, location.href);
    if (url.origin === location.origin && forbidden.test(url.pathname) && shown(a)) {
      out.push(`link "${a.innerText.trim()}" to ${url.pathname}`);
    }
  }
  return out;
}"""


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


class Watch:
    """What went wrong in the browser since the last ``take()``: JavaScript errors and
    same-origin static assets that failed or were refused."""

    def __init__(self, page, base: str):
        self.origin = urlsplit(base)[:2]
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"JavaScript error: {error}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _static(self, url: str) -> bool:
        parts = urlsplit(url)
        return parts[:2] == self.origin and parts.path.startswith(settings.STATIC_URL)

    def _console(self, message) -> None:
        if message.type == "error":
            source = message.location.get("url", "")
            self.problems.append(f"console error: {message.text} ({source or 'no source'})")

    def _failed(self, request) -> None:
        if self._static(request.url):
            self.problems.append(f"{request.url} failed: {request.failure}")

    def _response(self, response) -> None:
        if self._static(response.url) and response.status >= 400:
            self.problems.append(f"{response.url} answered {response.status}")

    def take(self, *, refused: bool) -> list[str]:
        found, self.problems = self.problems, []
        if refused:  # Chromium logs the refused document itself as a failed resource
            found = [p for p in found if "status of 403" not in p]
        return found


def check(page, request, watch: Watch, base: str, visit: Visit, *, status: int, viewer: bool):
    """Open one page at the current viewport; the problems found, each naming the page."""
    width = page.viewport_size["width"]
    where = f"{visit.name} {visit.path} @{width}px"
    watch.take(refused=False)  # whatever the previous page left behind is not this page's
    response = page.goto(f"{base}{visit.path}")
    problems = []
    if response is None or response.status != status:
        problems.append(f"status {response and response.status}, expected {status}")
    headings = page.locator("main h1")
    if headings.count() != 1 or not headings.first.is_visible():
        problems.append(f"{headings.count()} main headings, expected one visible")
    elif not headings.first.inner_text().strip():
        problems.append("the main heading is empty")
    wordless = page.evaluate(WORDLESS_BADGES_JS)
    if wordless:
        problems.append(f"status or badge without words: {wordless}")
    split = page.evaluate(SPLIT_WORDS_JS)
    if split:
        problems.append(f"a word split across lines: {split}")
    dashes = page.evaluate(DASH_CHOICES_JS)
    if dashes:
        problems.append(f"'---------' offered as a choice in: {dashes}")
    if width == PHONE["width"]:
        scroll_width, inner, outside = fits_width(page)
        if scroll_width > inner + 1:
            problems.append(f"horizontal overflow: scrollWidth {scroll_width} > {inner}")
        if outside:
            problems.append(f"elements outside the viewport: {outside}")
    if viewer:
        writes = page.evaluate(WRITES_JS, WRITE_NAME)
        if writes:
            problems.append(f"a viewer is offered writes: {writes}")
    path = shot(page, request, f"{visit.label}-{width}")
    shot_width, shot_height = png_size(path)
    if shot_width != width or not page.viewport_size["height"] <= shot_height <= MAX_SHOT_HEIGHT:
        problems.append(f"screenshot {path.name} is {shot_width}x{shot_height}")
    problems += watch.take(refused=status == 403)
    return [f"{where}: {problem}" for problem in problems]


# the tests ---------------------------------------------------------------------------------


def test_every_dashboard_url_name_has_pages_to_open():
    missing = unmapped_url_names()
    assert not missing, f"Dashboard URL names that test_every_page does not open: {missing}"
    stale = sorted(set(PAGES) - set(_dashboard_url_names()))
    assert not stale, f"PAGES names URL names that no longer exist: {stale}"
    tenant_pages = set(PAGES) - OUTSIDE_TENANT
    assert tenant_pages <= set(viewer_may_read()), tenant_pages - set(viewer_may_read())


@pytest.mark.parametrize("username", ["alice", "bob"])
def test_every_page(every_object, page, live_url, request, username):
    missing = unmapped_url_names()
    assert not missing, f"Dashboard URL names that this test does not open: {missing}"
    viewer = username == "bob"
    readable = viewer_may_read()
    viewports = [DESKTOP] if viewer else [DESKTOP, TABLET, PHONE]
    watch = Watch(page, live_url)
    login = Visit("dashboard:login", "login", reverse("dashboard:login"))
    problems: list[str] = []

    for viewport in viewports:  # the sign-in page, signed out
        page.set_viewport_size(viewport)
        problems += check(page, request, watch, live_url, login, status=200, viewer=False)
    sign_in(page, live_url, username)
    page.wait_for_url(f"{live_url}/t/acme/")

    for viewport in viewports:
        page.set_viewport_size(viewport)
        for visit in visits(every_object):
            allowed = not viewer or visit.name in OUTSIDE_TENANT or readable[visit.name]
            problems += check(
                page,
                request,
                watch,
                live_url,
                visit,
                status=200 if allowed else 403,
                viewer=viewer,
            )
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)
