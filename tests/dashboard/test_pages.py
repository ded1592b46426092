"""Dashboard pages, NetBox style: a subclass declares its page; the access tests come for free.

Every tenant page gets: anonymous is sent to the sign-in page; an outsider gets
a 404 (never a 403, so the tenant's existence is not revealed); each role gets
either the page or an audited 403; the lowest permitted role sees the page's
key content and nothing of another tenant; a forged POST by a role without the
write permission is an audited 403 that changes nothing.
``test_every_dashboard_url_is_covered`` fails when a dashboard URL name has no
such class (in any module of this package) and no explicit test class. A page
about one object creates it in ``url_kwargs``.

Then the forms (members, tokens, CSRF), sign-in and sign-out with their audit
events and the lockout, the tenant picker, and the audit page's filters and
pagination.
"""

from __future__ import annotations

import datetime
import hashlib
import html
import importlib
import json
import pkgutil
import re
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from controlplane import context
from controlplane.api.models import ApiToken
from controlplane.api.services import api_token_create
from controlplane.audit.models import AuditEvent
from controlplane.audit.services import audit_record
from controlplane.tenancy.choices import Role
from controlplane.tenancy.models import Invitation, Membership
from tests.api_mixins import ROLES_LOW_TO_HIGH
from tests.factories import TEST_PASSWORD, TenantFactory, UserFactory, add_member

pytestmark = pytest.mark.django_db

NOT_FOUND_TEXT = "There is nothing here"
FORBIDDEN_TEXT = "You do not have permission to do this in this tenant"
TOKEN_RE = re.compile(r"cp_[A-Za-z0-9]{8}_[A-Za-z0-9_\-]{20,}")


# helpers -------------------------------------------------------------------
def client_for(user, **defaults) -> Client:
    client = Client(**defaults)
    client.force_login(user)
    return client


def text(response) -> str:
    return response.content.decode()


def tenant_events(tenant, action: str):
    return AuditEvent.objects.for_tenant(tenant).filter(action=action)


def global_events(action: str):
    return AuditEvent.objects.unscoped().filter(chain="global", action=action)


def issue_token(tenant, user, name: str, scope: str = "read") -> Any:
    with context.system_context("tests", tenant=tenant):
        return api_token_create(tenant=tenant, user=user, name=name, scope=scope)


def record_event(tenant, action: str, target_name: str = "") -> AuditEvent:
    with context.system_context("tests", tenant=tenant):
        return audit_record(action=action, tenant=tenant, target_name=target_name)


def audit_actions(response) -> list[str]:
    """The Action column of the audit page's table, top to bottom."""
    return re.findall(r"<td><code>([^<]+)</code></td>", text(response))


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


# the generic page tests ----------------------------------------------------
class TenantPageTests:
    """Subclass per tenant page (URL ``/t/<tenant>/...``) and declare the attributes below."""

    url_name: ClassVar[str]  # without the "dashboard:" namespace
    permission: ClassVar[str]  # what a GET needs
    read_role: ClassVar[str] = Role.VIEWER  # lowest role that may open the page
    write_role: ClassVar[str | None] = None  # lowest role that may POST; None: no POST (405)
    write_permission: ClassVar[str | None] = None

    # hooks -----------------------------------------------------------------
    def url_kwargs(self, world) -> dict[str, Any]:
        """URL arguments besides the tenant; a page about one object creates it here."""
        return {}

    def prepare(self, world) -> tuple[list[str], list[str]]:
        """Create the page's data; return (texts the page shows, texts it must not show)."""
        raise NotImplementedError

    def forged_post(self, world) -> dict[str, str]:
        """A write that would succeed for ``write_role`` (or for anyone, were POST allowed)."""
        return {"op": "add", "username": world.charlie.username, "role": Role.OWNER}

    def written(self, world) -> Any:
        """A snapshot of what ``forged_post`` would change."""
        return sorted(
            Membership.objects.for_tenant(world.acme).values_list("user__username", "role")
        ) + sorted(Invitation.objects.for_tenant(world.acme).values_list("username", "role"))

    # helpers ---------------------------------------------------------------
    @classmethod
    def covered_url_names(cls) -> set[str]:
        return {f"dashboard:{cls.url_name}"}

    @pytest.fixture(autouse=True)
    def _page_url_kwargs(self, world):
        self.kwargs = self.url_kwargs(world)

    def url(self, tenant) -> str:
        return reverse(f"dashboard:{self.url_name}", kwargs={"tenant": tenant.slug, **self.kwargs})

    # tests -----------------------------------------------------------------
    def test_anonymous_is_sent_to_sign_in(self, world):
        url = self.url(world.acme)
        response = Client().get(url)
        assert response.status_code == 302
        assert response["Location"] == f"{reverse('dashboard:login')}?next={quote(url)}"
        posted = Client().post(url, self.forged_post(world))
        assert posted.status_code == 302
        assert posted["Location"].startswith(reverse("dashboard:login"))

    def test_outsider_gets_404_like_a_missing_tenant(self, world):
        charlie = client_for(world.charlie)
        response = charlie.get(self.url(world.acme))
        assert response.status_code == 404
        assert NOT_FOUND_TEXT in text(response)
        assert world.acme.name not in text(response)
        missing = charlie.get(self.url(TenantFactory.build(slug="no-such-tenant")))
        assert missing.status_code == 404
        assert NOT_FOUND_TEXT in text(missing)
        forged = charlie.post(self.url(world.acme), self.forged_post(world))
        assert forged.status_code == 404

    def test_every_role_gets_the_page_or_an_audited_403(self, world):
        url = self.url(world.acme)
        for role in ROLES_LOW_TO_HIGH:
            user = world.user_with_role(role)
            denials = tenant_events(world.acme, "permission.denied")
            before = denials.count()
            response = client_for(user).get(url)
            if ROLES_LOW_TO_HIGH.index(role) >= ROLES_LOW_TO_HIGH.index(self.read_role):
                assert response.status_code == 200, (role, response.status_code)
                assert denials.count() == before
            else:
                assert response.status_code == 403, (role, response.status_code)
                assert FORBIDDEN_TEXT in text(response)
                assert denials.count() == before + 1
                event = denials.order_by("-seq").first()
                assert event.actor_user_id == user.pk
                assert event.metadata["permission"] == self.permission
                assert event.metadata["method"] == "GET"
                assert event.metadata["path"] == url
                assert event.metadata["role"] == role

    def test_permitted_role_sees_the_key_content(self, world):
        shown, hidden = self.prepare(world)
        url = self.url(world.acme)
        response = client_for(world.user_with_role(self.read_role)).get(url)
        assert response.status_code == 200
        body = text(response)
        for snippet in shown:
            assert snippet in body, snippet
        for snippet in hidden:
            assert snippet not in body, snippet
        # the page's own navigation link is marked as the current page
        assert f'href="{url}" aria-current="page"' in body

    def test_forged_post_is_refused_and_changes_nothing(self, world):
        url = self.url(world.acme)
        if self.write_role is None:
            # not even the owner can POST to a read-only page
            owner = client_for(world.alice)
            before = self.written(world)
            response = owner.post(url, self.forged_post(world))
            assert response.status_code == 405
            assert self.written(world) == before
            return
        before = self.written(world)
        denied_roles = ROLES_LOW_TO_HIGH[: ROLES_LOW_TO_HIGH.index(self.write_role)]
        assert Role.VIEWER in denied_roles
        for role in denied_roles:
            user = world.user_with_role(role)
            denials = tenant_events(world.acme, "permission.denied")
            count = denials.count()
            response = client_for(user).post(url, self.forged_post(world))
            assert response.status_code == 403, (role, response.status_code)
            assert denials.count() == count + 1
            event = denials.order_by("-seq").first()
            assert event.metadata["method"] == "POST"
            assert event.metadata["permission"] == self.write_permission
            assert self.written(world) == before
        # the same POST by the permitted role does change something (the forgery was real)
        allowed = client_for(world.user_with_role(Role.OWNER)).post(url, self.forged_post(world))
        assert allowed.status_code in (201, 302), allowed.status_code
        assert self.written(world) != before


class TestOverviewPage(TenantPageTests):
    url_name = "overview"
    permission = "tenancy.view_tenant"

    def prepare(self, world):
        return (
            [
                "Acme Corp",
                "You are <strong>viewer</strong> here.",
                '<span class="num">4</span><span>members</span>',
                "1 owner, 1 admin, 1 operator, 1 viewer",
                "Ask an owner or admin for a token",
            ],
            ["Globex", "unrevoked API tokens", 'href="/t/acme/tokens/"'],
        )


class TestMembersPage(TenantPageTests):
    url_name = "members"
    permission = "tenancy.view_membership"
    write_role = Role.ADMIN
    write_permission = "tenancy.change_membership"

    def prepare(self, world):
        return (
            [
                "<td>alice</td>",
                "<td>adam</td>",
                "<td>oscar</td>",
                "<td>bob <small>(you)</small></td>",
                '<span class="badge">owner</span>',
            ],
            ["charlie", "Invite a member", 'name="op" value="remove"'],
        )


class TestTokensPage(TenantPageTests):
    url_name = "tokens"
    permission = "api.view_apitoken"
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    write_permission = "api.add_apitoken"

    def prepare(self, world):
        mine = issue_token(world.acme, world.oscar, "acme-ci-token")
        theirs = issue_token(world.globex, world.charlie, "globex-deploy-token")
        return (
            ["acme-ci-token", f"cp_{mine.token.prefix}_…", "Create a token", "Revoke"],
            ["globex-deploy-token", theirs.token.prefix, mine.plaintext],
        )

    def forged_post(self, world):
        return {
            "op": "create",
            "name": "forged",
            "scope": "write",
            "expires_in_days": "30",
            "username": world.bob.username,
        }

    def written(self, world):
        return sorted(ApiToken.objects.for_tenant(world.acme).values_list("name", flat=True))


class TestAuditPage(TenantPageTests):
    url_name = "audit"
    permission = "audit.view_auditevent"

    def prepare(self, world):
        record_event(world.acme, "acme.visible", "acme-target")
        record_event(world.globex, "globex.hidden", "globex-target")
        with context.system_context("tests"):
            audit_record(action="global.hidden", tenant=None)
        return (
            ["<code>acme.visible</code>", "acme-target", "audit_verify --tenant acme"],
            ["globex.hidden", "globex-target", "global.hidden", "Older events"],
        )


# coverage of the URL names -------------------------------------------------
def _page_test_classes() -> list[type[TenantPageTests]]:
    # Page-test classes live in every module of this package (and in the page tests of
    # apps kept with their app's tests): import them all, so the coverage check below does
    # not depend on which test files this run collected.
    package = Path(__file__).parent
    for module in pkgutil.iter_modules([str(package)]):
        if module.name.startswith("test_"):
            importlib.import_module(f"{__package__}.{module.name}")
    for module in ("tests.policies.test_pages",):
        importlib.import_module(module)
    found, todo = [], list(TenantPageTests.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def _dashboard_url_names() -> dict[str, str]:
    """``{"dashboard:<name>": "<route>"}`` for every named URL of the dashboard namespace."""
    names: dict[str, str] = {}

    def walk(patterns, namespaces, prefix):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                inner = [*namespaces, pattern.namespace] if pattern.namespace else namespaces
                walk(pattern.url_patterns, inner, route)
            elif (
                isinstance(pattern, URLPattern) and pattern.name and namespaces[:1] == ["dashboard"]
            ):
                names[":".join([*namespaces, pattern.name])] = route

    walk(get_resolver().url_patterns, [], "")
    return names


def test_every_dashboard_url_is_covered():
    explicit = {
        "dashboard:home": TestHome,
        "dashboard:login": TestLogin,
        "dashboard:logout": TestLogout,
        "dashboard:invitations": TestInvitations,
    }
    covered = set(explicit)
    for cls in _page_test_classes():
        covered |= cls.covered_url_names()
    existing = _dashboard_url_names()
    assert "dashboard:overview" in existing  # the walk itself works
    missing = set(existing) - covered
    assert not missing, (
        f"Dashboard URL names without page tests: {sorted(missing)}. Add a TenantPageTests "
        "subclass in tests/dashboard/test_pages.py (or an explicit test class for a page "
        "outside /t/<tenant>/)."
    )
    stale = covered - set(existing)
    assert not stale, f"Page tests for URL names that no longer exist: {sorted(stale)}"
    # a tenant page must get the generic tests, not only an explicit class
    for name in explicit:
        assert "<slug:tenant>" not in existing[name], (name, existing[name])
    for cls in _page_test_classes():
        for name in cls.covered_url_names():
            assert existing[name].startswith("t/<slug:tenant>/"), (name, existing[name])


# members forms -------------------------------------------------------------
class TestMemberForms:
    url = "/t/acme/members/"

    def test_invite_reveals_nothing_about_accounts(self, world):
        UserFactory(username="dave", email="dave@elsewhere.example")
        UserFactory(username="gone", is_active=False, email="gone@elsewhere.example")
        client = client_for(world.adam)
        said = {}
        for name in ("dave", "gone", "nobody"):
            response = client.post(self.url, {"op": "add", "username": name, "role": "viewer"})
            assert response.status_code == 302
            page = client.get(self.url)
            said[name] = [m.replace(name, "NAME") for m in messages_of(page)]
            assert "elsewhere.example" not in text(page)
        assert (
            said["dave"]
            == said["gone"]
            == said["nobody"]
            == [
                "Invited “NAME” as viewer. If an account of that name exists, its holder can "
                "accept on their home page for 14 days."
            ]
        )
        assert Membership.objects.for_tenant(world.acme).count() == 4
        page = text(client.get(self.url))
        for name in ("dave", "gone", "nobody"):
            assert f"<td>{name}</td>" in page  # listed alike under Invitations

    def test_invalid_name_is_400_with_the_error_shown(self, world):
        response = client_for(world.alice).post(
            self.url, {"op": "add", "username": "no spaces", "role": Role.VIEWER}
        )
        assert response.status_code == 400
        assert "Use letters, digits and @ . + - _ only." in text(response)
        assert 'value="no spaces"' in text(response)  # the form keeps what was typed
        assert not Invitation.objects.for_tenant(world.acme).exists()

    def test_add_invalid_role_is_400(self, world):
        response = client_for(world.alice).post(
            self.url, {"op": "add", "username": "dave", "role": "emperor"}
        )
        assert response.status_code == 400
        assert "Select a valid choice. emperor is not one of the available choices." in text(
            response
        )
        assert not Invitation.objects.for_tenant(world.acme).exists()

    def test_invited_member_accepts_and_is_listed_and_audited(self, world):
        dave = UserFactory(username="dave")
        client = client_for(world.alice)
        response = client.post(self.url, {"op": "add", "username": "dave", "role": Role.VIEWER})
        assert response.status_code == 302
        assert response["Location"] == self.url
        invite = tenant_events(world.acme, "membership.invite").get()
        assert invite.actor_user_id == world.alice.pk
        assert invite.after["username"] == "dave" and invite.after["role"] == "viewer"
        assert not Membership.objects.for_tenant(world.acme).filter(user=dave).exists()

        daves = client_for(dave)
        home = text(daves.get("/"))
        assert "Acme Corp</strong> (acme) invites you as viewer, sent by alice" in home
        invitation = Invitation.objects.for_tenant(world.acme).get()
        joined = daves.post("/invitations/", {"invitation": invitation.pk, "op": "accept"})
        assert joined["Location"] == "/t/acme/"
        membership = Membership.objects.for_tenant(world.acme).get(user=dave)
        assert membership.role == Role.VIEWER
        event = tenant_events(world.acme, "membership.create").get()
        assert event.actor_user_id == dave.pk
        assert event.after == {"user": "dave", "role": "viewer"}
        assert "<td>dave</td>" in text(client.get(self.url))

    def test_withdraw_an_invitation(self, world):
        client = client_for(world.alice)
        client.post(self.url, {"op": "add", "username": "dave", "role": Role.VIEWER})
        response = client.post(self.url, {"op": "cancel", "username": "dave"}, follow=True)
        assert "Invitation of “dave” withdrawn." in messages_of(response)
        assert not Invitation.objects.for_tenant(world.acme).exists()
        event = tenant_events(world.acme, "membership.invite_cancel").get()
        assert event.actor_user_id == world.alice.pk

    def test_add_existing_member_shows_an_error(self, world):
        response = client_for(world.alice).post(
            self.url, {"op": "add", "username": "bob", "role": Role.ADMIN}, follow=True
        )
        assert "bob is already a member." in messages_of(response)
        assert Membership.objects.for_tenant(world.acme).get(user=world.bob).role == Role.VIEWER
        assert not tenant_events(world.acme, "membership.create").exists()

    def test_admin_cannot_add_an_owner(self, world):
        UserFactory(username="dave")
        response = client_for(world.adam).post(
            self.url, {"op": "add", "username": "dave", "role": Role.OWNER}, follow=True
        )
        assert response.status_code == 200
        assert any("Only an owner" in m for m in messages_of(response))
        assert not Membership.objects.for_tenant(world.acme).filter(user__username="dave").exists()

    def test_change_role_is_audited(self, world):
        client = client_for(world.alice)
        response = client.post(self.url, {"op": "role", "username": "bob", "role": Role.OPERATOR})
        assert response.status_code == 302
        assert Membership.objects.for_tenant(world.acme).get(user=world.bob).role == Role.OPERATOR
        event = tenant_events(world.acme, "membership.update").get()
        assert event.before["role"] == "viewer"
        assert event.after["role"] == "operator"
        assert event.actor_user_id == world.alice.pk
        assert "bob is now operator." in messages_of(client.get(self.url))

    def test_change_to_an_invalid_role_changes_nothing(self, world):
        response = client_for(world.alice).post(
            self.url, {"op": "role", "username": "bob", "role": "emperor"}, follow=True
        )
        assert "Choose a valid role." in messages_of(response)
        assert Membership.objects.for_tenant(world.acme).get(user=world.bob).role == Role.VIEWER
        assert not tenant_events(world.acme, "membership.update").exists()

    def test_remove_is_audited_and_revokes_the_members_tokens(self, world):
        issued = issue_token(world.acme, world.oscar, "oscar-script")
        client = client_for(world.alice)
        response = client.post(self.url, {"op": "remove", "username": "oscar"})
        assert response.status_code == 302
        assert not Membership.objects.for_tenant(world.acme).filter(user=world.oscar).exists()
        event = tenant_events(world.acme, "membership.delete").get()
        assert event.before == {"user": "oscar", "role": "operator"}
        assert event.actor_user_id == world.alice.pk
        issued.token.refresh_from_db()
        assert issued.token.revoked_at is not None
        page = client.get(self.url)
        assert "Removed oscar." in messages_of(page)
        assert "<td>oscar</td>" not in text(page)

    def test_last_owner_cannot_be_removed(self, world):
        response = client_for(world.alice).post(
            self.url, {"op": "remove", "username": "alice"}, follow=True
        )
        assert "A tenant must keep at least one owner." in messages_of(response)
        assert Membership.objects.for_tenant(world.acme).filter(user=world.alice).exists()
        assert not tenant_events(world.acme, "membership.delete").exists()

    def test_member_of_another_tenant_is_404(self, world):
        client = client_for(world.alice)
        for op in ("remove", "role"):
            response = client.post(self.url, {"op": op, "username": "charlie", "role": "viewer"})
            assert response.status_code == 404, op
        assert Membership.objects.for_tenant(world.globex).get(user=world.charlie).role == "owner"

    def test_unknown_action_is_reported(self, world):
        response = client_for(world.alice).post(self.url, {"op": "explode"}, follow=True)
        assert "Unknown action." in messages_of(response)

    @pytest.mark.parametrize("op", ["role", "remove"])
    def test_viewer_cannot_change_or_remove(self, world, op):
        response = client_for(world.bob).post(
            self.url, {"op": op, "username": "oscar", "role": Role.OWNER}
        )
        assert response.status_code == 403
        assert Membership.objects.for_tenant(world.acme).get(user=world.oscar).role == "operator"
        assert tenant_events(world.acme, "permission.denied").count() == 1


# tokens forms --------------------------------------------------------------
class TestTokenForms:
    url = "/t/acme/tokens/"

    def create(self, client, **overrides):
        data = {
            "op": "create",
            "name": "CI pipeline",
            "scope": "read",
            "expires_in_days": "30",
            "username": "bob",
        }
        data.update(overrides)
        return client.post(self.url, data)

    def test_plaintext_is_shown_once_and_only_its_hash_is_stored(self, world):
        client = client_for(world.alice)
        response = self.create(client)
        assert response.status_code == 201
        body = text(response)
        found = TOKEN_RE.findall(body)
        assert len(found) == 1, found
        plaintext = found[0]
        assert body.count(plaintext) == 1

        token = ApiToken.objects.for_tenant(world.acme).get(name="CI pipeline")
        assert plaintext.startswith(f"cp_{token.prefix}_")
        assert token.token_hash == hashlib.sha256(plaintext.encode()).hexdigest()
        assert (token.user, token.created_by, token.scope) == (world.bob, world.alice, "read")
        assert tenant_events(world.acme, "api_token.create").filter(target_id=token.pk).exists()

        # the plaintext is in no row of any table, nor in any session
        with connection.cursor() as cursor:
            for table in connection.introspection.table_names():
                cursor.execute(
                    f"SELECT count(*) FROM {connection.ops.quote_name(table)} AS t "
                    "WHERE strpos(t::text, %s) > 0",
                    [plaintext],
                )
                assert cursor.fetchone()[0] == 0, table
        for session in Session.objects.all():
            assert plaintext not in json.dumps(session.get_decoded(), default=str)

        later = client.get(self.url)
        assert later.status_code == 200
        assert plaintext not in text(later)
        assert not TOKEN_RE.search(text(later))
        assert f"cp_{token.prefix}_…" in text(later)
        assert "CI pipeline" in text(later)

    def test_the_token_works_against_the_api(self, world):
        response = self.create(client_for(world.alice), scope="read")
        plaintext = TOKEN_RE.search(text(response)).group(0)
        api = Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
        assert api.get("/api/v1/t/acme/members/").status_code == 200

    def test_invalid_input_is_400_with_field_errors(self, world):
        response = self.create(
            client_for(world.alice), name="", expires_in_days="0", username="charlie"
        )
        assert response.status_code == 400
        body = text(response)
        assert "This field is required." in body
        assert "Ensure this value is greater than or equal to 1." in body
        assert "Select a valid choice. charlie is not one of the available choices." in body
        assert not TOKEN_RE.search(body)
        assert not ApiToken.objects.for_tenant(world.acme).exists()

    def test_revoke_is_audited(self, world):
        issued = issue_token(world.acme, world.bob, "to-revoke")
        client = client_for(world.alice)
        response = client.post(self.url, {"op": "revoke", "prefix": issued.token.prefix})
        assert response.status_code == 302
        issued.token.refresh_from_db()
        assert issued.token.revoked_at is not None
        event = tenant_events(world.acme, "api_token.revoke").get()
        assert event.actor_user_id == world.alice.pk
        assert event.target_id == str(issued.token.pk)
        page = client.get(self.url)
        assert "Token “to-revoke” revoked." in messages_of(page)
        assert '<span class="badge status-revoked">revoked</span>' in text(page)
        assert f'name="prefix" value="{issued.token.prefix}"' not in text(page)
        api = Client(HTTP_AUTHORIZATION=f"Bearer {issued.plaintext}")
        assert api.get("/api/v1/t/acme/members/").status_code == 401

    def test_only_permitted_members_are_offered(self, world):
        def offered(user) -> list[str]:
            page = text(client_for(user).get(self.url))
            start = page.index('<select name="username"')
            select = page[start : page.index("</select>", start)]
            return re.findall(r'<option value="([^"]+)"', select)

        assert offered(world.alice) == ["adam", "alice", "bob", "oscar"]
        assert offered(world.adam) == ["adam", "bob", "oscar"]  # not the owner

    def test_admin_forging_a_token_for_the_owner_is_an_audited_403(self, world):
        response = self.create(client_for(world.adam), username="alice", scope="admin")
        assert response.status_code == 403
        assert "alice is an owner" in text(response)
        assert not TOKEN_RE.search(text(response))
        assert not ApiToken.objects.for_tenant(world.acme).exists()
        denial = tenant_events(world.acme, "permission.denied").get()
        assert denial.actor_user_id == world.adam.pk
        assert denial.metadata["for_user"] == "alice"

    def test_admin_creates_for_an_operator_and_the_audit_says_who_for_whom(self, world):
        response = self.create(client_for(world.adam), username="oscar", scope="write")
        assert response.status_code == 201
        token = ApiToken.objects.for_tenant(world.acme).get()
        event = tenant_events(world.acme, "api_token.create").get()
        assert event.target_id == str(token.pk)
        assert (event.after["created_by"], event.after["for_user"]) == ("adam", "oscar")

    def test_scope_wider_than_the_role_is_a_field_error(self, world):
        response = self.create(client_for(world.alice), username="oscar", scope="admin")
        assert response.status_code == 400
        assert "oscar is an operator, so their tokens can have scope read or write" in text(
            response
        )
        assert not ApiToken.objects.for_tenant(world.acme).exists()

    def test_revoking_another_tenants_token_is_404(self, world):
        theirs = issue_token(world.globex, world.charlie, "globex-token")
        response = client_for(world.alice).post(
            self.url, {"op": "revoke", "prefix": theirs.token.prefix}
        )
        assert response.status_code == 404
        theirs.token.refresh_from_db()
        assert theirs.token.revoked_at is None


# CSRF ----------------------------------------------------------------------
class TestCsrf:
    @pytest.mark.parametrize(
        ("url", "data", "count"),
        [
            (
                "/t/acme/members/",
                {"op": "add", "username": "dave", "role": "viewer"},
                lambda w: Invitation.objects.for_tenant(w.acme).count(),
            ),
            (
                "/t/acme/tokens/",
                {
                    "op": "create",
                    "name": "x",
                    "scope": "read",
                    "expires_in_days": "5",
                    "username": "alice",
                },
                lambda w: ApiToken.objects.for_tenant(w.acme).count(),
            ),
        ],
    )
    def test_post_without_csrf_token_is_403(self, world, url, data, count):
        UserFactory(username="dave")
        client = client_for(world.alice, enforce_csrf_checks=True)
        before = count(world)
        refused = client.post(url, data)
        assert refused.status_code == 403
        assert "CSRF" in text(refused)
        assert count(world) == before
        # the same POST with the page's token goes through: the refusal was about CSRF
        client.get(url)
        token = client.cookies[settings.CSRF_COOKIE_NAME].value
        accepted = client.post(url, {**data, "csrfmiddlewaretoken": token})
        assert accepted.status_code in (201, 302), accepted.status_code
        assert count(world) == before + 1

    def test_login_without_csrf_token_is_403(self, world):
        client = Client(enforce_csrf_checks=True)
        response = client.post("/login/", {"username": "alice", "password": TEST_PASSWORD})
        assert response.status_code == 403
        assert "_auth_user_id" not in client.session
        assert not global_events("auth.login").exists()


# sign-in and sign-out ------------------------------------------------------
class TestLogin:
    url = "/login/"

    def test_form_is_shown(self, world):
        response = Client().get(self.url)
        assert response.status_code == 200
        body = text(response)
        assert 'name="csrfmiddlewaretoken"' in body
        assert 'name="username"' in body and 'type="password"' in body

    def test_right_credentials_sign_in_and_are_audited(self, world):
        client = Client(HTTP_USER_AGENT="pytest-browser/1.0")
        response = client.post(self.url, {"username": "alice", "password": TEST_PASSWORD})
        assert response.status_code == 302
        assert response["Location"] == reverse("dashboard:home")
        assert client.session["_auth_user_id"] == str(world.alice.pk)
        event = global_events("auth.login").get()
        assert event.tenant_id is None
        assert event.actor_user_id == world.alice.pk
        assert event.target_name == "alice"
        assert event.ip == "127.0.0.1"
        assert event.metadata["user_agent"] == "pytest-browser/1.0"
        assert (
            not AuditEvent.objects.unscoped()
            .filter(action="auth.login")
            .exclude(chain="global")
            .exists()
        )
        # home then opens her only tenant
        assert client.get(response["Location"])["Location"] == "/t/acme/"

    def test_next_is_followed_only_on_this_site(self, world):
        inside = Client().post(
            self.url,
            {"username": "alice", "password": TEST_PASSWORD, "next": "/t/acme/members/"},
        )
        assert inside["Location"] == "/t/acme/members/"
        outside = Client().post(
            self.url,
            {"username": "alice", "password": TEST_PASSWORD, "next": "https://evil.example/"},
        )
        assert outside.status_code == 302
        assert outside["Location"] == reverse("dashboard:home")

    def test_wrong_password_shows_the_error_and_is_audited(self, world):
        client = Client()
        response = client.post(self.url, {"username": "alice", "password": "not-her-password"})
        assert response.status_code == 200
        body = text(response)
        assert "That username and password do not match an account." in body
        assert 'value="alice"' in body
        assert "_auth_user_id" not in client.session
        event = global_events("auth.login_failed").get()
        assert event.target_name == "alice"
        assert event.actor_name == "anonymous (as alice)"
        assert event.actor_user_id is None
        assert event.ip == "127.0.0.1"
        assert "not-her-password" not in json.dumps(
            [event.metadata, event.before, event.after, event.target_name]
        )
        assert not global_events("auth.login").exists()

    def test_lockout_after_repeated_failures(self, world):
        limit = settings.AXES_FAILURE_LIMIT
        assert limit == 5  # LOGIN_FAILURE_LIMIT's default, which the test environment keeps
        client = Client()
        for attempt in range(1, limit):
            response = client.post(self.url, {"username": "alice", "password": f"wrong-{attempt}"})
            assert response.status_code == 200, attempt
            assert "do not match an account" in text(response)
        # the limit-th failure is itself answered with the lockout page
        assert client.post(self.url, {"username": "alice", "password": "wrong"}).status_code == 429
        assert global_events("auth.login_failed").count() == limit

        response = client.post(self.url, {"username": "alice", "password": TEST_PASSWORD})
        assert response.status_code == 429
        minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
        assert (
            "Too many failed sign-ins for this account from your address. "
            f"Try again in {minutes} minutes"
        ) in text(response)
        assert "_auth_user_id" not in client.session
        assert not global_events("auth.login").exists()
        locked = global_events("auth.locked_out")
        assert locked.exists()
        event = locked.order_by("-seq").first()
        assert event.target_name == "alice"
        assert event.metadata == {"username": "alice", "ip": "127.0.0.1"}
        assert event.actor_name == "system:login-throttle"

    def test_lockout_is_per_username_and_address(self, world):
        for attempt in range(settings.AXES_FAILURE_LIMIT):
            Client().post(self.url, {"username": "alice", "password": f"wrong-{attempt}"})
        assert (
            Client().post(self.url, {"username": "alice", "password": TEST_PASSWORD}).status_code
            == 429
        )
        # another account from the same address, and the same account from elsewhere, still work
        bob = Client().post(self.url, {"username": "bob", "password": TEST_PASSWORD})
        assert bob.status_code == 302
        elsewhere = Client(REMOTE_ADDR="10.0.0.7").post(
            self.url, {"username": "alice", "password": TEST_PASSWORD}
        )
        assert elsewhere.status_code == 302
        assert global_events("auth.login").count() == 2

    def test_signed_in_user_is_sent_on(self, world):
        response = client_for(world.alice).get(self.url)
        assert response.status_code == 302
        assert response["Location"] == reverse("dashboard:home")


class TestLogout:
    url = "/logout/"

    def test_get_is_refused(self, world):
        client = client_for(world.alice)
        response = client.get(self.url)
        assert response.status_code == 405
        assert client.get("/t/acme/").status_code == 200
        assert not global_events("auth.logout").exists()

    def test_post_signs_out_and_is_audited(self, world):
        client = client_for(world.alice)
        response = client.post(self.url)
        assert response.status_code == 302
        assert response["Location"] == reverse("dashboard:login")
        event = global_events("auth.logout").get()
        assert event.actor_user_id == world.alice.pk
        assert event.target_name == "alice"
        assert client.get("/t/acme/")["Location"].startswith("/login/")

    def test_signed_in_pages_offer_sign_out_as_a_form(self, world):
        body = text(client_for(world.alice).get("/t/acme/"))
        assert re.search(r'<form method="post" action="/logout/">\s*<input type="hidden"', body)


# the tenant picker ---------------------------------------------------------
# invitations (answered outside any tenant) ---------------------------------
class TestInvitations:
    url = "/invitations/"

    def invite(self, tenant, username: str, role: str = Role.VIEWER) -> Invitation:
        from controlplane.tenancy.services import membership_invite

        with context.system_context("tests", tenant=tenant):
            return membership_invite(tenant=tenant, username=username, role=role)

    def test_anonymous_is_sent_to_sign_in(self, world):
        invitation = self.invite(world.acme, "dave")
        response = Client().post(self.url, {"invitation": invitation.pk, "op": "accept"})
        assert response.status_code == 302 and response["Location"].startswith("/login/")
        assert Invitation.objects.unscoped().exists()

    def test_get_is_405(self, world):
        assert client_for(world.alice).get(self.url).status_code == 405

    def test_home_shows_invitations_instead_of_redirecting(self, world):
        self.invite(world.globex, "alice", Role.ADMIN)
        response = client_for(world.alice).get("/")
        assert response.status_code == 200
        assert "Globex</strong> (globex) invites you as admin." in text(response)

    def test_decline_is_audited_and_joins_nothing(self, world):
        invitation = self.invite(world.globex, "bob")
        response = client_for(world.bob).post(
            self.url, {"invitation": invitation.pk, "op": "decline"}, follow=True
        )
        assert "Invitation to Globex declined." in messages_of(response)
        assert not Invitation.objects.unscoped().exists()
        assert not Membership.objects.for_tenant(world.globex).filter(user=world.bob).exists()
        event = tenant_events(world.globex, "membership.invite_decline").get()
        assert event.actor_user_id == world.bob.pk

    @pytest.mark.parametrize("invitation", ["someone else's", "missing", "not a number"])
    def test_an_invitation_not_yours_is_404(self, world, invitation):
        theirs = self.invite(world.globex, "bob")
        pk = {"someone else's": theirs.pk, "missing": theirs.pk + 1000, "not a number": "x"}
        response = client_for(world.alice).post(
            self.url, {"invitation": pk[invitation], "op": "accept"}
        )
        assert response.status_code == 404
        assert not Membership.objects.for_tenant(world.globex).filter(user=world.alice).exists()
        assert Invitation.objects.unscoped().filter(pk=theirs.pk).exists()

    def test_unknown_op_changes_nothing(self, world):
        invitation = self.invite(world.globex, "bob")
        response = client_for(world.bob).post(
            self.url, {"invitation": invitation.pk, "op": "explode"}, follow=True
        )
        assert "Choose accept or decline." in messages_of(response)
        assert Invitation.objects.unscoped().exists()

    def test_csrf_is_enforced(self, world):
        invitation = self.invite(world.globex, "bob")
        client = client_for(world.bob, enforce_csrf_checks=True)
        refused = client.post(self.url, {"invitation": invitation.pk, "op": "accept"})
        assert refused.status_code == 403
        assert not Membership.objects.for_tenant(world.globex).filter(user=world.bob).exists()


class TestHome:
    url = "/"

    def test_anonymous_is_sent_to_sign_in(self, world):
        response = Client().get(self.url)
        assert response.status_code == 302
        assert response["Location"] == "/login/?next=/"

    def test_only_tenant_opens_directly(self, world):
        response = client_for(world.alice).get(self.url)
        assert response.status_code == 302
        assert response["Location"] == "/t/acme/"

    def test_several_tenants_get_a_picker(self, world):
        add_member(world.globex, world.alice, Role.VIEWER)
        response = client_for(world.alice).get(self.url)
        assert response.status_code == 200
        body = text(response)
        assert "Your tenants" in body
        assert '<a class="tile" href="/t/acme/"><strong>Acme Corp</strong>' in body
        assert "acme · your role: owner" in body
        assert '<a class="tile" href="/t/globex/"><strong>Globex</strong>' in body
        assert "globex · your role: viewer" in body

    def test_last_tenant_used_is_remembered(self, world):
        add_member(world.globex, world.alice, Role.VIEWER)
        client = client_for(world.alice)
        assert client.get("/t/globex/").status_code == 200
        assert client.get(self.url)["Location"] == "/t/globex/"
        assert client.get("/t/acme/members/").status_code == 200
        assert client.get(self.url)["Location"] == "/t/acme/"

    def test_user_without_tenant_is_told_what_to_do(self, world):
        loner = UserFactory(username="loner")
        response = client_for(loner).get(self.url)
        assert response.status_code == 200
        assert "You are not a member of any tenant yet" in text(response)
        assert "<strong>loner</strong>" in text(response)

    def test_switcher_lists_only_the_users_tenants(self, world):
        add_member(world.globex, world.alice, Role.ADMIN)
        body = text(client_for(world.alice).get("/t/acme/"))
        assert 'href="/t/acme/" aria-current="true">Acme Corp <small>(acme, owner)</small>' in body
        assert 'href="/t/globex/" >Globex <small>(globex, admin)</small>' in body
        assert "Globex" not in text(client_for(world.bob).get("/t/acme/"))


# audit page: filters and pagination ----------------------------------------
class TestAuditPageListing:
    url = "/t/acme/audit/"

    def test_action_prefix_and_exact_filters(self, world):
        record_event(world.acme, "membership.create", "m1")
        record_event(world.acme, "membership.update", "m2")
        record_event(world.acme, "api_token.create", "t1")
        record_event(world.acme, "membershipish.other", "x1")
        client = client_for(world.bob)
        everything = audit_actions(client.get(self.url))
        assert len(everything) == 4
        prefix = audit_actions(client.get(self.url, {"action": "membership."}))
        assert prefix == ["membership.update", "membership.create"]
        exact = audit_actions(client.get(self.url, {"action": "api_token.create"}))
        assert exact == ["api_token.create"]
        target = audit_actions(client.get(self.url, {"target": "T1"}))
        assert target == ["api_token.create"]
        none = client.get(self.url, {"action": "nothing."})
        assert audit_actions(none) == []
        assert "No audit events match these filters" in text(none)

    def test_before_and_after_are_shown_as_json_not_python(self, world):
        with context.system_context("tests", tenant=world.acme):
            audit_record(
                action="thing.update",
                tenant=world.acme,
                before={"name": "old", "enabled": True, "note": None},
                after={"name": "new", "enabled": False, "note": None},
            )
        body = text(client_for(world.bob).get(self.url))
        assert "&quot;name&quot;: &quot;new&quot;" in body
        assert "&quot;enabled&quot;: false" in body and "&quot;note&quot;: null" in body
        assert "&#x27;name&#x27;" not in body and "None" not in body

    def test_filters_are_labelled_for_people_with_date_pickers(self, world):
        record_event(world.acme, "membership.create", "m1")
        client = client_for(world.bob)
        body = text(client.get(self.url))
        form = body.split('aria-label="Filter audit events"')[1].split("</form>")[0]
        assert "is greater than" not in form and "---------" not in form
        assert "From (UTC" in form and "Until (UTC" in form
        assert form.count('type="datetime-local"') == 2
        # what a date picker sends (no offset, seconds optional) filters as UTC
        later = (timezone.now() + datetime.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
        assert audit_actions(client.get(self.url, {"until": later})) == ["membership.create"]
        assert audit_actions(client.get(self.url, {"since": later})) == []

    def test_invalid_filter_is_explained_not_a_500(self, world):
        record_event(world.acme, "membership.create")
        response = client_for(world.bob).get(self.url, {"since": "yesterday-ish"})
        assert response.status_code == 200
        assert 'class="error" role="alert"' in text(response)
        assert audit_actions(response) == []

    def _older_link(self, response) -> str | None:
        match = re.search(r'<a href="\?([^"]*)">Older events', text(response))
        return html.unescape(match.group(1)) if match else None

    def test_older_events_pagination(self, world):
        for i in range(1, 61):
            record_event(world.acme, "bulk.event", f"item-{i:03d}")
        client = client_for(world.bob)
        first = client.get(self.url)
        names = re.findall(r"item-\d{3}", text(first))
        assert len(audit_actions(first)) == 50
        assert names[0] == "item-060" and names[-1] == "item-011"
        query = self._older_link(first)
        assert query is not None and "before=" in query
        second = client.get(f"{self.url}?{query}")
        names = re.findall(r"item-\d{3}", text(second))
        assert len(audit_actions(second)) == 10
        assert names == [f"item-{i:03d}" for i in range(10, 0, -1)]
        assert self._older_link(second) is None

    def test_exactly_one_page_has_no_older_link(self, world):
        for i in range(50):
            record_event(world.acme, "bulk.event", f"item-{i:03d}")
        response = client_for(world.bob).get(self.url)
        assert len(audit_actions(response)) == 50
        assert self._older_link(response) is None

    def test_pagination_keeps_the_filter(self, world):
        for i in range(1, 56):
            record_event(world.acme, "bulk.event", f"item-{i:03d}")
            if i % 10 == 0:
                record_event(world.acme, "other.event", f"other-{i:03d}")
        client = client_for(world.bob)
        first = client.get(self.url, {"action": "bulk."})
        assert set(audit_actions(first)) == {"bulk.event"}
        assert len(audit_actions(first)) == 50
        query = self._older_link(first)
        assert "action=bulk." in query
        second = client.get(f"{self.url}?{query}")
        assert audit_actions(second) == ["bulk.event"] * 5
        assert "other-" not in text(second)
