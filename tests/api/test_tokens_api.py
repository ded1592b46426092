import datetime as dt
import hashlib

import pytest
from django.utils import timezone

from controlplane.api.models import ApiToken
from controlplane.audit.models import AuditEvent
from controlplane.tenancy.choices import Role
from controlplane.tenancy.models import Membership
from tests.api_mixins import TenantEndpointTests, assert_error_shape
from tests.factories import UserFactory, add_member, make_token


class TestTokensEndpoint(TenantEndpointTests):
    basename = "token"
    lookup_kwarg = "prefix"
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    create_audit_action = "api_token.create"
    delete_audit_action = "api_token.revoke"
    supports_update = False
    invalid_create_data = {"name": "", "scope": "everything", "expires_in_days": 0}

    def make_object(self, world, tenant):
        owner = world.alice if tenant == world.acme else world.charlie
        make_token(tenant, owner, scope="read")
        return ApiToken.objects.for_tenant(tenant).latest("id")

    def lookup(self, obj):
        return obj.prefix

    def create_data(self, world):
        return {"name": "ci", "scope": "write", "expires_in_days": 30}


@pytest.mark.django_db
class TestTokenLifecycle:
    def test_token_is_shown_once_and_stored_hashed(self, world, api):
        client = api(world.alice, world.acme)
        response = client.post(
            "/api/v1/t/acme/tokens/", {"name": "deploy", "scope": "read"}, format="json"
        )
        assert response.status_code == 201
        plaintext = response.json()["token"]
        assert plaintext.startswith("cp_")
        token = ApiToken.objects.for_tenant(world.acme).get(prefix=response.json()["prefix"])
        assert token.token_hash == hashlib.sha256(plaintext.encode()).hexdigest()
        assert plaintext not in str(ApiToken.objects.unscoped().values_list())
        detail = client.get(f"/api/v1/t/acme/tokens/{token.prefix}/").json()
        assert "token" not in detail and "token_hash" not in detail
        # and the audit row does not carry it either
        rows = AuditEvent.objects.for_tenant(world.acme).filter(action="api_token.create")
        assert all(plaintext not in str(r.after) for r in rows)

    def test_token_authenticates_with_its_scope(self, world, api):
        created = (
            api(world.alice, world.acme)
            .post(
                "/api/v1/t/acme/tokens/",
                {"name": "x", "scope": "read", "username": "oscar"},
                format="json",
            )
            .json()
        )
        from rest_framework.test import APIClient

        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {created['token']}")
        assert client.get("/api/v1/t/acme/members/").status_code == 200
        assert created["username"] == "oscar"
        denied = client.post(
            "/api/v1/t/acme/members/", {"username": "bob", "role": "viewer"}, format="json"
        )
        assert_error_shape(denied, 403)

    def test_revoked_token_no_longer_authenticates(self, world, api):
        plaintext = make_token(world.acme, world.alice)
        from rest_framework.test import APIClient

        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
        prefix = plaintext.split("_")[1]
        assert client.delete(f"/api/v1/t/acme/tokens/{prefix}/").status_code == 204
        body = assert_error_shape(client.get("/api/v1/t/acme/members/"), 401)
        assert "revoked" in body["errors"][0]["detail"]

    def test_expired_token_is_refused(self, world):
        plaintext = make_token(world.acme, world.alice)
        ApiToken.objects.unscoped().filter(prefix=plaintext.split("_")[1]).update(
            expires_at=timezone.now() - dt.timedelta(seconds=1)
        )
        from rest_framework.test import APIClient

        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
        assert_error_shape(client.get("/api/v1/t/acme/members/"), 401)

    def test_wrong_secret_with_a_real_prefix_is_refused(self, world):
        plaintext = make_token(world.acme, world.alice)
        forged = plaintext[:-4] + ("AAAA" if not plaintext.endswith("AAAA") else "BBBB")
        from rest_framework.test import APIClient

        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {forged}")
        assert_error_shape(client.get("/api/v1/t/acme/members/"), 401)

    def test_malformed_authorization_header_is_401(self, world):
        from rest_framework.test import APIClient

        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION="Bearer two parts")
        body = assert_error_shape(client.get("/api/v1/t/acme/members/"), 401)
        assert "Bearer <token>" in body["errors"][0]["detail"]

    def test_token_is_bound_to_its_tenant(self, world, api):
        add_member(world.globex, world.alice, Role.OWNER)
        client = api(world.alice, world.acme)
        assert client.get("/api/v1/t/acme/members/").status_code == 200
        # alice is a globex owner too, but this token belongs to acme
        assert_error_shape(client.get("/api/v1/t/globex/members/"), 404)

    def test_last_used_is_recorded(self, world, api):
        client = api(world.alice, world.acme)
        token = ApiToken.objects.for_tenant(world.acme).latest("id")
        assert token.last_used_at is None
        client.get("/api/v1/t/acme/members/")
        token.refresh_from_db()
        assert token.last_used_at is not None

    def test_token_for_a_non_member_is_400_like_for_no_account(self, world, api):
        client = api(world.alice, world.acme)
        answers = []
        for username in ("charlie", "nobody-at-all"):  # an account elsewhere, and none
            response = client.post(
                "/api/v1/t/acme/tokens/", {"name": "x", "username": username}, format="json"
            )
            body = assert_error_shape(response, 400, attr="username")
            answers.append(body["errors"][0]["detail"].replace(username, "NAME"))
        assert answers[0] == answers[1] == "No member of this tenant is named 'NAME'."

    def test_write_scope_cannot_administer(self, world, api):
        client = api(world.alice, world.acme, scope="write")
        assert_error_shape(client.get("/api/v1/t/acme/tokens/"), 403)
        assert client.get("/api/v1/t/acme/members/").status_code == 200

    def test_token_of_a_former_member_stops_working(self, world, api):
        client = api(world.bob, world.acme, scope="read")
        assert client.get("/api/v1/t/acme/members/").status_code == 200
        api(world.alice, world.acme).delete("/api/v1/t/acme/members/bob/")
        assert_error_shape(client.get("/api/v1/t/acme/members/"), 401)

    def test_filters(self, world, api):
        client = api(world.alice, world.acme)
        make_token(world.acme, world.bob, scope="read")
        response = client.get("/api/v1/t/acme/tokens/?username=bob&active=true")
        assert [t["username"] for t in response.json()["results"]] == ["bob"]


@pytest.mark.django_db
class TestSessionAuthentication:
    def test_session_writes_need_csrf(self, world):
        from rest_framework.test import APIClient

        client = APIClient(enforce_csrf_checks=True)
        client.force_login(world.alice)
        assert client.get("/api/v1/t/acme/members/").status_code == 200
        response = client.post(
            "/api/v1/t/acme/members/", {"username": "charlie", "role": "viewer"}, format="json"
        )
        body = assert_error_shape(response, 403)
        assert "CSRF" in body["errors"][0]["detail"]


TOKENS = "/api/v1/t/acme/tokens/"


def token_for(client, username: str, scope: str = "read"):
    return client.post(TOKENS, {"name": "x", "scope": scope, "username": username}, format="json")


@pytest.mark.django_db
class TestWhoMayCreateTokensForWhom:
    """Issue 11 item 1: a token for someone else is a way to act as them."""

    def test_admin_cannot_take_the_owners_token_and_become_owner(self, world, api):
        adam = api(world.adam, world.acme)
        response = token_for(adam, "alice", scope="admin")
        body = assert_error_shape(response, 403)
        assert body["errors"][0]["detail"] == (
            "You can create API tokens only for yourself and for members whose role is below "
            "yours (admin): alice is an owner."
        )
        assert "token" not in response.json()
        assert not ApiToken.objects.for_tenant(world.acme).filter(user=world.alice).exists()
        denial = AuditEvent.objects.for_tenant(world.acme).filter(action="permission.denied").get()
        assert denial.actor_user_id == world.adam.pk
        assert denial.metadata["reason"] == "token_for_user"
        assert (denial.metadata["for_user"], denial.metadata["for_role"]) == ("alice", "owner")
        # and the rest of the attack, with adam's own admin token, is refused as well
        assert_error_shape(
            adam.patch("/api/v1/t/acme/members/adam/", {"role": "owner"}, format="json"), 403
        )
        assert_error_shape(adam.delete("/api/v1/t/acme/members/alice/"), 403)
        assert_error_shape(
            adam.patch("/api/v1/t/acme/members/alice/", {"role": "viewer"}, format="json"), 403
        )
        roles = dict(
            Membership.objects.for_tenant(world.acme).values_list("user__username", "role")
        )
        assert (roles["alice"], roles["adam"]) == ("owner", "admin")

    def test_nobody_creates_tokens_for_an_equal_role(self, world, api):
        ada = add_member(world.acme, UserFactory(username="ada"), Role.ADMIN).user
        olga = add_member(world.acme, UserFactory(username="olga"), Role.OWNER).user
        assert_error_shape(token_for(api(world.adam, world.acme), ada.username), 403)
        assert_error_shape(token_for(api(world.alice, world.acme), olga.username), 403)
        assert not ApiToken.objects.for_tenant(world.acme).filter(user__in=[ada, olga]).exists()

    @pytest.mark.parametrize(
        ("creator", "target"),
        [
            ("alice", "alice"),
            ("alice", "adam"),
            ("alice", "oscar"),
            ("alice", "bob"),
            ("adam", "adam"),
            ("adam", "oscar"),
            ("adam", "bob"),
        ],
    )
    def test_for_yourself_and_for_lower_roles(self, world, api, creator, target):
        client = api(getattr(world, creator), world.acme)
        response = token_for(client, target)
        assert response.status_code == 201, response.content
        token = ApiToken.objects.for_tenant(world.acme).get(prefix=response.json()["prefix"])
        assert (token.user.username, token.created_by.username) == (target, creator)
        event = AuditEvent.objects.for_tenant(world.acme).get(
            action="api_token.create", target_id=str(token.pk)
        )
        assert (event.after["created_by"], event.after["for_user"]) == (creator, target)

    @pytest.mark.parametrize(
        ("target", "scope", "message"),
        [
            (
                "oscar",
                "admin",
                "oscar is an operator, so their tokens can have scope read or write, not admin.",
            ),
            (
                "bob",
                "admin",
                "bob is a viewer, so their tokens can have scope read or write, not admin.",
            ),
        ],
    )
    def test_scope_is_capped_by_the_members_role(self, world, api, target, scope, message):
        response = token_for(api(world.alice, world.acme), target, scope=scope)
        body = assert_error_shape(response, 400, attr="scope")
        assert body["errors"][0]["detail"] == message
        assert not ApiToken.objects.for_tenant(world.acme).filter(user__username=target).exists()

    def test_the_largest_scope_of_each_role_is_allowed(self, world, api):
        client = api(world.alice, world.acme)
        for target, scope in (("adam", "admin"), ("oscar", "write"), ("bob", "write")):
            assert token_for(client, target, scope=scope).status_code == 201, target

    def test_targets_offered_are_those_the_rule_allows(self, world):
        from controlplane.api.services import api_token_targets

        def names(user):
            return [m.user.username for m in api_token_targets(tenant=world.acme, creator=user)]

        assert names(world.alice) == ["adam", "alice", "bob", "oscar"]
        assert names(world.adam) == ["adam", "bob", "oscar"]
        assert names(world.oscar) == names(world.bob) == []


@pytest.mark.django_db
class TestRefusalsNameTheirReason:
    """Issue 12 item 12 and issue 11 item 9: the scope is named when it is the reason, and a
    read-scope token is GET only, also for POSTs that change nothing."""

    def test_owners_read_token_posting_a_run_is_told_the_scope(self, world, api):
        response = api(world.alice, world.acme, scope="read").post(
            "/api/v1/t/acme/runs/", {}, format="json"
        )
        detail = assert_error_shape(response, 403)["errors"][0]["detail"]
        assert detail.startswith("A read-scope token can only read")
        assert "role" not in detail
        denial = AuditEvent.objects.for_tenant(world.acme).filter(action="permission.denied")
        assert denial.get().metadata["reason"] == "token_scope"

    def test_viewers_read_token_is_told_the_role(self, world, api):
        response = api(world.bob, world.acme, scope="read").post(
            "/api/v1/t/acme/runs/", {}, format="json"
        )
        detail = assert_error_shape(response, 403)["errors"][0]["detail"]
        assert detail == "Your role in this tenant does not allow this action."

    def test_owners_write_token_reading_tokens_is_told_the_scope(self, world, api):
        response = api(world.alice, world.acme, scope="write").get(TOKENS)
        detail = assert_error_shape(response, 403)["errors"][0]["detail"]
        assert detail == (
            "This API token has scope write, which does not allow this action; your role "
            "would. Use a token with scope admin."
        )

    def test_operators_token_creating_a_workflow_is_told_the_role(self, world, api):
        response = api(world.oscar, world.acme).post("/api/v1/t/acme/workflows/", {}, format="json")
        detail = assert_error_shape(response, 403)["errors"][0]["detail"]
        assert detail == "Your role in this tenant does not allow this action."

    def test_read_token_cannot_post_workflow_validate(self, world, api):
        body = {"definition": {"steps": []}}
        url = "/api/v1/t/acme/workflows/validate/"
        refused = api(world.alice, world.acme, scope="read").post(url, body, format="json")
        assert "read-scope" in assert_error_shape(refused, 403)["errors"][0]["detail"]
        # a viewer's session, and a write token, still validate: it needs only view rights
        allowed = api(world.oscar, world.acme, scope="write").post(url, body, format="json")
        assert allowed.status_code == 200, allowed.content
        from rest_framework.test import APIClient

        session = APIClient()
        session.force_login(world.bob)
        assert session.post(url, body, format="json").status_code == 200

    def test_read_token_still_reads(self, world, api):
        client = api(world.alice, world.acme, scope="read")
        assert client.get("/api/v1/t/acme/workflows/").status_code == 200
        assert client.head("/api/v1/t/acme/workflows/").status_code == 200
        assert client.options("/api/v1/t/acme/workflows/").status_code == 200
