"""Sign-in and the foundation's pages in a real Chromium against the real ASGI server."""

from __future__ import annotations

import hashlib
import re

import pytest
from playwright.sync_api import expect

from controlplane.api.models import ApiToken
from controlplane.audit.models import AuditEvent
from controlplane.tenancy.models import Membership
from tests.browser.conftest import orm, shot
from tests.factories import TEST_PASSWORD, UserFactory

pytestmark = pytest.mark.browser

TOKEN_RE = re.compile(r"cp_[A-Za-z0-9]{8}_[A-Za-z0-9_\-]{20,}")
PHONE = {"width": 390, "height": 844}


def sign_in(page, base: str, username: str, password: str = TEST_PASSWORD) -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.get_by_role("button", name="Sign in").click()


# Visible elements sticking out of the viewport on either side. Content pushed off the
# left edge does not widen scrollWidth, yet cannot be reached; the skip link and
# screen-reader-only labels are off-screen on purpose.
OFFSCREEN_JS = """() => {
  const out = [];
  for (const el of document.querySelectorAll("body *")) {
    if (el.closest(".skip, .sr-only") || !el.checkVisibility({visibilityProperty: true})) {
      continue;
    }
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    if (r.left < -1 || r.right > window.innerWidth + 1) {
      const name = `${el.tagName.toLowerCase()}.${el.className}`;
      out.push(`${name} [${Math.round(r.left)}, ${Math.round(r.right)}]`);
    }
  }
  return out;
}"""


def fits_width(page) -> tuple[int, int, list[str]]:
    """(scrollWidth, innerWidth, elements outside the viewport)."""
    width, inner = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
    return width, inner, page.evaluate(OFFSCREEN_JS)


@pytest.fixture
def dave(transactional_db):
    """An account that belongs to no tenant yet (committed before the browser starts)."""
    return UserFactory(username="dave")


def test_alice_signs_in_and_lands_on_her_overview(page, live_url, world, request):
    page.goto(f"{live_url}/")
    expect(page).to_have_url(f"{live_url}/login/?next=/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shot(page, request, "login")

    page.fill("#id_username", "alice")
    page.fill("#id_password", TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_url}/t/acme/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Acme Corp")
    expect(page.locator("main")).to_contain_text("You are owner here.")
    expect(page.locator(".who .user")).to_have_text("alice · owner")

    page.locator(".switcher summary").click()
    items = page.locator(".switcher ul li")
    expect(items).to_have_count(1)
    expect(items.first).to_have_text("Acme Corp (acme, owner)")
    expect(items.first.locator("a")).to_have_attribute("aria-current", "true")
    shot(page, request, "overview")

    assert orm(
        lambda: (
            AuditEvent.objects.unscoped()
            .filter(chain="global", action="auth.login", actor_user=world.alice)
            .exists()
        )
    )

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{live_url}/login/")
    shot(page, request, "signed-out")
    assert orm(
        lambda: (
            AuditEvent.objects.unscoped()
            .filter(chain="global", action="auth.logout", actor_user=world.alice)
            .exists()
        )
    )


def test_owner_invites_a_member_who_accepts(dave, page, live_url, world, request):
    sign_in(page, live_url, "alice")
    expect(page).to_have_url(f"{live_url}/t/acme/")
    shot(page, request, "overview")
    page.get_by_role("navigation", name="Tenant sections").get_by_role(
        "link", name="Members"
    ).click()
    expect(page).to_have_url(f"{live_url}/t/acme/members/")
    shot(page, request, "members")

    page.fill("#id_username", "dave")
    page.select_option("#id_role", "viewer")
    page.get_by_role("button", name="Invite").click()
    expect(page.locator(".messages")).to_contain_text(
        "Invited “dave” as viewer. If an account of that name exists"
    )
    expect(page.locator("#invitations tbody tr", has_text="dave")).to_have_count(1)
    shot(page, request, "member-invited")

    # a name with no account gets the very same answer: nothing is revealed
    page.fill("#id_username", "nobody-here")
    page.get_by_role("button", name="Invite").click()
    expect(page.locator(".messages")).to_contain_text(
        "Invited “nobody-here” as viewer. If an account of that name exists"
    )
    shot(page, request, "unknown-name-invited")

    # dave signs in (his own browser context), sees the invitation and accepts it
    other = page.context.browser.new_context()
    try:
        daves = other.new_page()
        sign_in(daves, live_url, "dave")
        expect(daves.locator("#invitations")).to_contain_text("Acme Corp")
        shot(daves, request, "invitation")
        daves.get_by_role("button", name="Accept").click()
        expect(daves).to_have_url(f"{live_url}/t/acme/")
        expect(daves.locator(".messages")).to_contain_text("You joined Acme Corp as viewer.")
    finally:
        other.close()

    membership = orm(
        lambda: Membership.objects.for_tenant(world.acme).filter(user__username="dave").first()
    )
    assert membership is not None and membership.role == "viewer"
    page.reload()
    row = page.locator("#members tbody tr", has_text="dave")
    expect(row).to_have_count(1)
    expect(row.locator("select")).to_have_value("viewer")
    shot(page, request, "member-joined")


def test_owner_creates_a_token_and_sees_it_once(page, live_url, world, request):
    sign_in(page, live_url, "alice")
    expect(page).to_have_url(f"{live_url}/t/acme/")
    shot(page, request, "overview")
    page.get_by_role("link", name="API tokens").click()
    expect(page).to_have_url(f"{live_url}/t/acme/tokens/")
    expect(page.locator("main")).to_contain_text("No API tokens yet")
    shot(page, request, "tokens-empty")

    page.fill("#id_name", "CI pipeline")
    page.select_option("#id_scope", "read")
    page.fill("#id_expires_in_days", "30")
    page.select_option("#id_username", "bob")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-token")
    expect(secret).to_be_visible()
    plaintext = secret.inner_text().strip()
    assert TOKEN_RE.fullmatch(plaintext), plaintext
    assert page.content().count(plaintext) == 1
    shot(page, request, "token-created")

    token = orm(lambda: ApiToken.objects.for_tenant(world.acme).get(name="CI pipeline"))
    assert token.token_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert plaintext.startswith(f"cp_{token.prefix}_")

    page.goto(f"{live_url}/t/acme/tokens/")
    expect(page.locator("#tokens")).to_contain_text("CI pipeline")
    expect(page.locator("#tokens")).to_contain_text(f"cp_{token.prefix}_…")
    expect(page.locator("#new-token")).to_have_count(0)
    assert plaintext not in page.content()
    shot(page, request, "tokens-later")


def test_viewer_sees_no_add_form_and_no_tokens_link(page, live_url, world, request):
    sign_in(page, live_url, "bob")
    expect(page).to_have_url(f"{live_url}/t/acme/")
    expect(page.locator(".who .user")).to_have_text("bob · viewer")
    nav = page.get_by_role("navigation", name="Tenant sections")
    expect(nav.get_by_role("link", name="Members")).to_be_visible()
    expect(nav.get_by_role("link", name="API tokens")).to_have_count(0)
    shot(page, request, "overview")

    nav.get_by_role("link", name="Members").click()
    expect(page).to_have_url(f"{live_url}/t/acme/members/")
    expect(page.locator("#members")).to_contain_text("alice")
    expect(page.get_by_role("heading", name="Invite a member")).to_have_count(0)
    expect(page.get_by_role("button", name="Invite")).to_have_count(0)
    expect(page.get_by_role("button", name="Remove")).to_have_count(0)
    shot(page, request, "members")

    response = page.goto(f"{live_url}/t/acme/tokens/")
    assert response.status == 403
    expect(page.locator("main")).to_contain_text("You do not have permission")
    shot(page, request, "tokens-forbidden")


def test_wrong_password_shows_the_error(page, live_url, world, request):
    sign_in(page, live_url, "alice", "not-the-password")
    expect(page).to_have_url(f"{live_url}/login/")
    expect(page.get_by_role("alert")).to_contain_text(
        "That username and password do not match an account."
    )
    expect(page.locator("#id_username")).to_have_value("alice")
    expect(page.locator("#id_password")).to_have_value("")
    shot(page, request, "login-error")
    assert (
        orm(
            lambda: (
                AuditEvent.objects.unscoped()
                .filter(chain="global", action="auth.login_failed", target_name="alice")
                .count()
            )
        )
        == 1
    )


def test_pages_fit_a_phone_screen(page, live_url, world, request):
    page.set_viewport_size(PHONE)
    page.goto(f"{live_url}/login/")
    checked = {"login": fits_width(page)}
    shot(page, request, "login")

    sign_in(page, live_url, "alice")
    expect(page).to_have_url(f"{live_url}/t/acme/")
    checked["overview"] = fits_width(page)
    shot(page, request, "overview")

    page.goto(f"{live_url}/t/acme/members/")
    expect(page.locator("#members")).to_contain_text("oscar")
    checked["members"] = fits_width(page)
    shot(page, request, "members")

    page.goto(f"{live_url}/t/acme/tokens/")
    checked["tokens"] = fits_width(page)
    shot(page, request, "tokens")
    page.fill("#id_name", "A token with a rather long descriptive name for the phone")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token")).to_be_visible()
    checked["token-created"] = fits_width(page)
    shot(page, request, "token-created")

    page.goto(f"{live_url}/t/acme/audit/")
    expect(page.locator("#audit-events")).to_contain_text("api_token.create")
    checked["audit"] = fits_width(page)
    shot(page, request, "audit")
    page.locator("#audit-events details summary").first.click()
    expect(page.locator("#audit-events details pre").first).to_be_visible()
    checked["audit-details"] = fits_width(page)
    shot(page, request, "audit-details")

    page.locator(".switcher summary").click()
    expect(page.locator(".switcher ul a")).to_be_visible()
    checked["switcher-open"] = fits_width(page)
    shot(page, request, "switcher-open")
    page.locator(".switcher ul a").click()
    expect(page).to_have_url(f"{live_url}/t/acme/")

    too_wide = {name: w[:2] for name, w in checked.items() if w[0] > w[1] + 1}
    assert not too_wide, f"horizontal overflow at 390 px (scrollWidth, innerWidth): {too_wide}"
    outside = {name: w[2] for name, w in checked.items() if w[2]}
    assert not outside, f"elements outside the 390 px viewport: {outside}"
    assert all(inner == PHONE["width"] for _, inner, _ in checked.values()), checked
