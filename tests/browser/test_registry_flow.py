"""The registry in a real Chromium: alice registers an MCP server, discovers its tools,
grants one to an agent, publishes a new version and rolls it back.

The MCP test server (tests/agents/mcp_test_server.py) runs over streamable HTTP in a
subprocess; the dashboard runs in the real ASGI server of ``conftest.asgi_server``.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from agents.models import Agent, AgentVersion, McpServer, ProviderConnection, Tool, ToolGrant
from tests.agents.registry_factories import make_agent, make_provider
from tests.browser.conftest import orm, shot
from tests.browser.test_login_flow import PHONE, fits_width, sign_in
from tests.mcp_process import running_mcp_test_server

pytestmark = pytest.mark.browser


def htmx_ready(page) -> None:
    """Wait until htmx (a deferred script) runs, so a click is answered by htmx, not a reload."""
    page.wait_for_load_state("load")
    page.wait_for_function("() => window.htmx !== undefined")


@pytest.fixture(scope="module")
def mcp_url():
    with running_mcp_test_server() as url:
        yield url


@pytest.fixture
def triage(transactional_db, world):
    """A simulated provider and the agent alice works on (committed before the browser starts)."""
    provider = make_provider(world.acme, slug="sim")
    return make_agent(world.acme, slug="triage", provider=provider, tags=["support"])


def test_alice_registers_an_mcp_server_and_ships_an_agent_version(
    triage, mcp_url, page, live_url, world, request
):
    sign_in(page, live_url, "alice")
    expect(page).to_have_url(f"{live_url}/t/acme/")
    nav = page.get_by_role("navigation", name="Tenant sections")

    # register the MCP server ---------------------------------------------------------------
    nav.get_by_role("link", name="MCP servers").click()
    expect(page).to_have_url(f"{live_url}/t/acme/mcp-servers/")
    expect(page.locator("main")).to_contain_text("No MCP servers yet.")
    shot(page, request, "mcp-empty")
    page.get_by_role("link", name="New MCP server").click()
    page.get_by_label("Slug").fill("testsrv")
    page.get_by_label("Name", exact=True).fill("Test tools")
    expect(page.get_by_role("radio", name="Streamable HTTP")).to_be_checked()
    page.get_by_label("URL (streamable HTTP)").fill(mcp_url)
    shot(page, request, "mcp-form")
    page.get_by_role("button", name="Register server").click()
    expect(page).to_have_url(f"{live_url}/t/acme/mcp-servers/testsrv/")
    expect(page.locator(".messages")).to_contain_text("MCP server “testsrv” registered.")
    expect(page.locator("#mcp-tools")).to_contain_text("No tools registered from this server yet.")

    # discover its tools (htmx swaps the tools section in place) ------------------------------
    htmx_ready(page)
    page.get_by_role("button", name="Discover tools").click()
    outcome = page.locator("#discover-outcome")
    expect(outcome).to_contain_text("Discovered", timeout=15_000)
    expect(page).to_have_url(f"{live_url}/t/acme/mcp-servers/testsrv/")  # no page load
    tools = page.locator("#discovered-tools")
    add_row = tools.locator("tr", has=page.locator("code", has_text=re.compile(r"^add$")))
    expect(add_row.locator(".badge.risk-read")).to_have_text("read")
    wipe_row = tools.locator("tr", has=page.locator("code", has_text=re.compile(r"^wipe$")))
    expect(wipe_row.locator(".badge.risk-destructive")).to_have_text("destructive")
    add_row.get_by_text("Input schema").click()
    expect(add_row.locator("pre").first).to_contain_text('"a"')
    shot(page, request, "mcp-discovered")
    discovered = orm(
        lambda: set(
            Tool.objects.for_tenant(world.acme)
            .filter(mcp_server__slug="testsrv")
            .values_list("mcp_tool_name", flat=True)
        )
    )
    assert {"add", "echo", "wipe"} <= discovered, discovered
    assert orm(
        lambda: McpServer.objects.for_tenant(world.acme).get(slug="testsrv").last_discovered_at
    )

    # grant "add" to the agent --------------------------------------------------------------
    nav.get_by_role("link", name="Agents").click()
    expect(page.locator("#agents")).to_contain_text("triage")
    shot(page, request, "agents")
    page.locator("#agents").get_by_role("link", name="Agent").click()
    expect(page).to_have_url(f"{live_url}/t/acme/agents/triage/")
    expect(page.locator("#simulated-label")).to_contain_text("simulated")
    page.get_by_label("Tool", exact=True).select_option("testsrv-add")
    page.get_by_role("button", name="Grant tool").click()
    expect(page.locator(".messages")).to_contain_text("triage may now use testsrv-add.")
    expect(page.locator("#agent-grants")).to_contain_text("testsrv-add")
    expect(page.locator("main")).to_contain_text("not pinned yet: testsrv-add")
    shot(page, request, "granted")
    assert orm(
        lambda: (
            ToolGrant.objects.for_tenant(world.acme)
            .filter(agent__slug="triage", tool__slug="testsrv-add")
            .exists()
        )
    )

    # a bad configuration is refused with its path -----------------------------------------
    config = page.locator("#id_config")
    v1 = json.loads(config.input_value())
    config.fill(json.dumps({**v1, "temperature": 7}, indent=2))
    page.get_by_role("button", name="Publish v2").click()
    expect(page.locator("#field-config .error")).to_contain_text(
        "config.temperature: 7 is greater than the maximum of 2"
    )
    shot(page, request, "publish-error")

    # publish v2 (submitted from the keyboard) ----------------------------------------------
    page.locator("#id_config").fill(json.dumps({**v1, "temperature": 0.7}, indent=2))
    note = page.locator("#id_note")
    note.fill("use the add tool")
    note.press("Enter")
    expect(page.locator(".messages")).to_contain_text("Published v2; it is now current.")
    expect(page.locator("#current-config")).to_contain_text('"temperature": 0.7')
    expect(page.locator("#pinned-tools")).to_contain_text("testsrv-add")
    history = page.locator("#version-history")
    expect(history.locator("tr.current")).to_contain_text("v2")
    shot(page, request, "published")

    # compare v1 with v2 --------------------------------------------------------------------
    page.get_by_label("From version").select_option("1")
    page.get_by_label("To version").select_option("2")
    page.get_by_role("button", name="Compare").click()
    diff = page.locator("#version-diff")
    expect(diff).to_contain_text("config.temperature")
    expect(diff).to_contain_text("tools")
    shot(page, request, "diff")

    # roll back to v1: the confirmation guards it --------------------------------------------
    dialogs: list[str] = []

    def dismiss(dialog):
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.get_by_role("button", name="Roll back to v1").click()
    expect(history.locator("tr.current")).to_contain_text("v2")
    assert dialogs and "Roll triage back to v1?" in dialogs[0]
    assert orm(lambda: AgentVersion.objects.for_tenant(world.acme).count()) == 2

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Roll back to v1").click()
    expect(page.locator(".messages")).to_contain_text(
        "Rolled back: v3 copies v1 and is now current."
    )
    expect(page.locator("#current-config")).to_contain_text('"temperature": 0.2')
    expect(page.locator("#pinned-tools")).to_contain_text("No tools pinned in this version.")
    expect(history.locator("tr.current")).to_contain_text("copy of v1")
    shot(page, request, "rolled-back")

    current = orm(
        lambda: (
            Agent.objects.for_tenant(world.acme)
            .select_related("current_version")
            .get(slug="triage")
            .current_version
        )
    )
    assert (current.number, current.rolled_back_from, current.tools) == (3, 1, [])
    assert current.config == v1


def test_registry_pages_fit_a_phone_screen(triage, mcp_url, page, live_url, world, request):
    page.set_viewport_size(PHONE)
    sign_in(page, live_url, "alice")
    expect(page).to_have_url(f"{live_url}/t/acme/")
    checked = {"overview": fits_width(page)}
    shot(page, request, "overview-nav")

    pages = {
        "agents": "/t/acme/agents/",
        "agent": "/t/acme/agents/triage/",
        "agent-new": "/t/acme/agents/new/",
        "tools": "/t/acme/tools/",
        "tool-new-http": "/t/acme/tools/new/?kind=http",
        "provider-new": "/t/acme/providers/new/",
        "knowledge-new": "/t/acme/knowledge/new/",
        "providers": "/t/acme/providers/",
        "provider": "/t/acme/providers/sim/",
        "mcp-new": "/t/acme/mcp-servers/new/",
        "secrets": "/t/acme/secrets/",
        "knowledge": "/t/acme/knowledge/",
    }
    for name, path in pages.items():
        response = page.goto(f"{live_url}{path}")
        assert response.status == 200, (name, response.status)
        checked[name] = fits_width(page)
        shot(page, request, name)

    # an MCP server with discovered tools and open schemas, and a version diff
    page.goto(f"{live_url}/t/acme/mcp-servers/new/")
    page.get_by_label("Slug").fill("testsrv")
    page.get_by_label("Name", exact=True).fill("Test tools")
    page.get_by_label("URL (streamable HTTP)").fill(mcp_url)
    page.get_by_role("button", name="Register server").click()
    expect(page).to_have_url(f"{live_url}/t/acme/mcp-servers/testsrv/")
    htmx_ready(page)
    page.get_by_role("button", name="Discover tools").click()
    expect(page.locator("#discover-outcome")).to_contain_text("Discovered", timeout=15_000)
    for summary in page.locator("#discovered-tools summary").all()[:3]:
        summary.click()
    checked["mcp-discovered"] = fits_width(page)
    shot(page, request, "mcp-discovered")

    page.goto(f"{live_url}/t/acme/agents/triage/")
    page.locator("#id_note").fill("second")
    page.get_by_role("button", name="Publish v2").click()
    page.get_by_role("button", name="Compare").click()
    expect(page.locator("#diff")).to_be_visible()
    checked["agent-diff"] = fits_width(page)
    shot(page, request, "agent-diff")

    too_wide = {name: w[:2] for name, w in checked.items() if w[0] > w[1] + 1}
    assert not too_wide, f"horizontal overflow at 390 px (scrollWidth, innerWidth): {too_wide}"
    outside = {name: w[2] for name, w in checked.items() if w[2]}
    assert not outside, f"elements outside the 390 px viewport: {outside}"
    # the navigation wraps onto a few short lines, not a column of links
    nav_height = page.locator("nav.sections").bounding_box()["height"]
    assert nav_height < 120, nav_height


def test_admin_adds_a_provider_tests_it_and_registers_an_agent_from_an_example(
    page, live_url, world, request
):
    sign_in(page, live_url, "adam")
    expect(page).to_have_url(f"{live_url}/t/acme/")
    page.get_by_role("navigation", name="Tenant sections").get_by_role(
        "link", name="Agents"
    ).click()
    expect(page.locator("main")).to_contain_text("An LLM agent needs a model provider")
    shot(page, request, "agents-empty")
    page.get_by_role("link", name="add a provider").click()

    # the simulated provider, then "Test connection" answered in place by htmx
    page.get_by_label("Slug").fill("sim")
    page.get_by_label("Name", exact=True).fill("Simulator")
    expect(page.get_by_label("Kind")).to_have_value("simulated")
    page.get_by_role("button", name="Add provider").click()
    expect(page).to_have_url(f"{live_url}/t/acme/providers/sim/")
    expect(page.locator("#test-result")).to_have_text("Not tested yet.")
    htmx_ready(page)
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#test-result")).to_contain_text("✓ Works.")
    expect(page).to_have_url(f"{live_url}/t/acme/providers/sim/")
    shot(page, request, "provider-tested")
    assert orm(
        lambda: ProviderConnection.objects.for_tenant(world.acme).get(slug="sim").last_test_ok
    )

    # an agent from the HTTP example: switching the example keeps what was typed
    page.goto(f"{live_url}/t/acme/agents/new/")
    htmx_ready(page)
    page.get_by_label("Slug").fill("crm-hook")
    page.get_by_label("Name", exact=True).fill("CRM hook")
    config = page.locator("#id_config")
    expect(config).to_have_value(re.compile(r'"provider": "sim"'))
    page.locator("#kind-config").get_by_role("link", name="http", exact=True).click()
    expect(config).to_have_value(re.compile(r'"url": "https://agents.example.com/webhook"'))
    expect(page.get_by_label("Kind")).to_have_value("http")
    expect(page.get_by_label("Slug")).to_have_value("crm-hook")  # swapped in place
    shot(page, request, "agent-http-example")

    example = json.loads(config.input_value())
    config.fill(json.dumps({**example, "timeout_seconds": 0, "auth_secret": "missing"}))
    page.get_by_role("button", name="Register agent").click()
    errors = page.locator("#field-config .error")
    expect(errors).to_contain_text(["config.timeout_seconds: 0 is less than or equal to"])
    expect(page.locator(".error-box")).to_contain_text("Nothing was saved.")
    shot(page, request, "agent-errors")
    assert orm(lambda: Agent.objects.for_tenant(world.acme).count()) == 0

    config.fill(json.dumps(example))
    page.get_by_role("button", name="Register agent").click()
    expect(page).to_have_url(f"{live_url}/t/acme/agents/crm-hook/")
    expect(page.locator(".messages")).to_contain_text("Agent “crm-hook” registered as v1.")
    expect(page.locator("#simulated-label")).to_have_count(0)
    shot(page, request, "agent-created")
