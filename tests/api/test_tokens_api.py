import datetime as dt
import hashlib

import pytest
from django.utils import timezone

from controlplane.api.models import ApiToken
from controlplane.audit.models import AuditEvent
from controlplane.tenancy.choices import Role
from tests.api_mixins import TenantEndpointTests, assert_error_shape
from tests.factories import add_member, make_token


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

    def test_token_for_a_non_member_is_400(self, world, api):
        response = api(world.alice, world.acme).post(
            "/api/v1/t/acme/tokens/", {"name": "x", "username": "charlie"}, format="json"
        )
        assert_error_shape(response, 400, attr="user")

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
