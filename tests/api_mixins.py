"""Generic API tests, NetBox style: a subclass declares its resource; the tests come for free.

Every tenant API resource gets: anonymous is 401; a permitted role reads (200); a
role without the permission is 403 and the denial is audited; an object of
another tenant and a missing object are both 404; an outsider's view of the
tenant is 404; writes succeed for the permitted role and write their audit row;
a read-scope token cannot write; bad input is a 400 in the one error shape.
``tests/test_api_routes_covered.py`` fails when a route has no such class.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.urls import reverse

from controlplane.audit.models import AuditEvent
from controlplane.tenancy.choices import Role

ROLES_LOW_TO_HIGH = [Role.VIEWER, Role.OPERATOR, Role.ADMIN, Role.OWNER]


def assert_error_shape(response, status: int, attr: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert body["type"] in ("validation_error", "client_error", "server_error"), body
    assert body["errors"] and all("code" in e and "detail" in e for e in body["errors"]), body
    if attr is not None:
        assert attr in [e["attr"] for e in body["errors"]], body
    return body


def audit_rows(tenant, action: str):
    return AuditEvent.objects.for_tenant(tenant).filter(action=action)


class TenantEndpointTests:
    """Subclass per tenant API resource and declare the class attributes and hooks below."""

    basename: ClassVar[str]
    lookup_kwarg: ClassVar[str]  # the detail route's object kwarg, e.g. "username"
    read_role: ClassVar[str] = Role.VIEWER  # lowest role that may read
    write_role: ClassVar[str | None] = Role.ADMIN  # lowest role that may write; None: read-only
    create_audit_action: ClassVar[str | None] = None
    update_audit_action: ClassVar[str | None] = None
    delete_audit_action: ClassVar[str | None] = None
    update_data: ClassVar[dict[str, Any] | None] = None
    invalid_create_data: ClassVar[dict[str, Any]] = {}
    supports_create: ClassVar[bool] = True
    supports_update: ClassVar[bool] = True
    supports_delete: ClassVar[bool] = True
    extra_routes: ClassVar[set[str]] = set()

    # hooks -----------------------------------------------------------------
    def make_object(self, world, tenant) -> Any:
        raise NotImplementedError

    def lookup(self, obj) -> str:
        raise NotImplementedError

    def create_data(self, world) -> dict[str, Any]:
        raise NotImplementedError

    # helpers ---------------------------------------------------------------
    @classmethod
    def covered_routes(cls) -> set[str]:
        return {f"api:{cls.basename}-list", f"api:{cls.basename}-detail", *cls.extra_routes}

    def list_url(self, tenant) -> str:
        return reverse(f"api:{self.basename}-list", kwargs={"tenant": tenant.slug})

    def detail_url(self, tenant, key: str) -> str:
        return reverse(
            f"api:{self.basename}-detail", kwargs={"tenant": tenant.slug, self.lookup_kwarg: key}
        )

    def denied_read_role(self) -> str | None:
        index = ROLES_LOW_TO_HIGH.index(self.read_role)
        return ROLES_LOW_TO_HIGH[index - 1] if index > 0 else None

    def denied_write_role(self) -> str | None:
        if self.write_role is None:
            return None
        index = ROLES_LOW_TO_HIGH.index(self.write_role)
        return ROLES_LOW_TO_HIGH[index - 1] if index > 0 else None

    # reads -----------------------------------------------------------------
    def test_anonymous_is_401(self, world, api):
        response = api().get(self.list_url(world.acme))
        assert_error_shape(response, 401)
        assert response["WWW-Authenticate"].startswith("Bearer")

    def test_permitted_role_lists_and_retrieves(self, world, api):
        obj = self.make_object(world, world.acme)
        client = api(world.user_with_role(self.read_role), world.acme)
        listed = client.get(self.list_url(world.acme))
        assert listed.status_code == 200, listed.content
        assert "results" in listed.json()
        detail = client.get(self.detail_url(world.acme, self.lookup(obj)))
        assert detail.status_code == 200, detail.content

    def test_role_without_permission_is_403_and_audited(self, world, api):
        role = self.denied_read_role()
        if role is None:
            # every role may read: the 403 path is exercised by the write tests instead
            assert self.read_role == Role.VIEWER
            return
        user = world.user_with_role(role)
        before = audit_rows(world.acme, "permission.denied").count()
        assert_error_shape(api(user, world.acme).get(self.list_url(world.acme)), 403)
        assert audit_rows(world.acme, "permission.denied").count() == before + 1

    def test_other_tenants_object_is_404(self, world, api):
        foreign = self.make_object(world, world.globex)
        client = api(world.alice, world.acme)
        assert_error_shape(client.get(self.detail_url(world.acme, self.lookup(foreign))), 404)

    def test_missing_object_is_404(self, world, api):
        client = api(world.alice, world.acme)
        assert_error_shape(client.get(self.detail_url(world.acme, "99999999")), 404)

    def test_outsider_sees_404_for_the_tenant(self, world, api):
        obj = self.make_object(world, world.acme)
        client = api(world.charlie, world.globex)
        assert_error_shape(client.get(self.list_url(world.acme)), 404)
        assert_error_shape(client.get(self.detail_url(world.acme, self.lookup(obj))), 404)

    # writes ----------------------------------------------------------------
    def test_create_permitted_and_audited(self, world, api):
        if self.write_role is None or not self.supports_create:
            response = api(world.alice, world.acme).post(
                self.list_url(world.acme), {}, format="json"
            )
            assert_error_shape(response, 405)
            return
        client = api(world.user_with_role(self.write_role), world.acme)
        response = client.post(self.list_url(world.acme), self.create_data(world), format="json")
        assert response.status_code == 201, response.content
        rows = audit_rows(world.acme, self.create_audit_action)
        assert rows.exists()
        assert rows.first().actor_token_id is not None  # token use for writes is recorded

    def test_create_denied_is_403_and_audited(self, world, api):
        role = self.denied_write_role()
        if role is None or not self.supports_create:
            assert self.write_role in (None, Role.VIEWER) or not self.supports_create
            return
        client = api(world.user_with_role(role), world.acme)
        before = audit_rows(world.acme, "permission.denied").count()
        response = client.post(self.list_url(world.acme), self.create_data(world), format="json")
        assert_error_shape(response, 403)
        assert audit_rows(world.acme, "permission.denied").count() == before + 1

    def test_invalid_create_is_400_with_fields(self, world, api):
        if self.write_role is None or not self.supports_create:
            return
        client = api(world.user_with_role(self.write_role), world.acme)
        body = assert_error_shape(
            client.post(self.list_url(world.acme), self.invalid_create_data, format="json"), 400
        )
        assert body["type"] == "validation_error"
        assert any(e["attr"] for e in body["errors"]), body

    def test_read_scope_token_cannot_write(self, world, api):
        if self.write_role is None or not self.supports_create:
            return
        client = api(world.alice, world.acme, scope="read")
        response = client.post(self.list_url(world.acme), self.create_data(world), format="json")
        assert_error_shape(response, 403)

    def test_update_permitted_and_audited(self, world, api):
        if self.write_role is None or not self.supports_update:
            return
        obj = self.make_object(world, world.acme)
        client = api(world.user_with_role(self.write_role), world.acme)
        response = client.patch(
            self.detail_url(world.acme, self.lookup(obj)), self.update_data, format="json"
        )
        assert response.status_code == 200, response.content
        assert audit_rows(world.acme, self.update_audit_action).exists()

    def test_update_foreign_object_is_404(self, world, api):
        if self.write_role is None or not self.supports_update:
            return
        foreign = self.make_object(world, world.globex)
        client = api(world.alice, world.acme)
        response = client.patch(
            self.detail_url(world.acme, self.lookup(foreign)), self.update_data, format="json"
        )
        assert_error_shape(response, 404)

    def test_delete_permitted_and_audited(self, world, api):
        if self.write_role is None or not self.supports_delete:
            return
        obj = self.make_object(world, world.acme)
        client = api(world.user_with_role(self.write_role), world.acme)
        response = client.delete(self.detail_url(world.acme, self.lookup(obj)))
        assert response.status_code == 204, response.content
        assert audit_rows(world.acme, self.delete_audit_action).exists()

    def test_delete_denied_and_foreign(self, world, api):
        if self.write_role is None or not self.supports_delete:
            return
        obj = self.make_object(world, world.acme)
        role = self.denied_write_role()
        if role is not None:
            denied = api(world.user_with_role(role), world.acme)
            assert_error_shape(denied.delete(self.detail_url(world.acme, self.lookup(obj))), 403)
        foreign = self.make_object(world, world.globex)
        client = api(world.alice, world.acme)
        assert_error_shape(client.delete(self.detail_url(world.acme, self.lookup(foreign))), 404)
