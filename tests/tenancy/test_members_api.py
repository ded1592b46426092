import pytest

from controlplane.tenancy.choices import Role
from controlplane.tenancy.models import Membership
from tests.api_mixins import TenantEndpointTests, assert_error_shape
from tests.factories import UserFactory, add_member


class TestMembersEndpoint(TenantEndpointTests):
    basename = "member"
    lookup_kwarg = "username"
    read_role = Role.VIEWER
    write_role = Role.ADMIN
    create_audit_action = "membership.create"
    update_audit_action = "membership.update"
    delete_audit_action = "membership.delete"
    update_data = {"role": Role.OPERATOR}
    invalid_create_data = {"username": "", "role": "emperor"}

    def make_object(self, world, tenant):
        return add_member(tenant, UserFactory(), Role.VIEWER)

    def lookup(self, obj):
        return obj.user.username

    def create_data(self, world):
        return {"username": UserFactory().username, "role": Role.VIEWER}


@pytest.mark.django_db
class TestMemberRules:
    def test_unknown_user_gets_a_field_error(self, world, api):
        response = api(world.alice, world.acme).post(
            "/api/v1/t/acme/members/", {"username": "nobody", "role": "viewer"}, format="json"
        )
        body = assert_error_shape(response, 400, attr="username")
        assert "No active user" in body["errors"][0]["detail"]

    def test_duplicate_member_is_400(self, world, api):
        response = api(world.alice, world.acme).post(
            "/api/v1/t/acme/members/", {"username": "bob", "role": "viewer"}, format="json"
        )
        assert_error_shape(response, 400, attr="user")

    def test_admin_cannot_grant_owner(self, world, api):
        response = api(world.adam, world.acme).patch(
            "/api/v1/t/acme/members/bob/", {"role": "owner"}, format="json"
        )
        assert_error_shape(response, 403)
        assert Membership.objects.for_tenant(world.acme).get(user=world.bob).role == Role.VIEWER

    def test_last_owner_cannot_be_demoted_or_removed(self, world, api):
        client = api(world.alice, world.acme)
        assert_error_shape(
            client.patch("/api/v1/t/acme/members/alice/", {"role": "admin"}, format="json"), 400
        )
        assert_error_shape(client.delete("/api/v1/t/acme/members/alice/"), 400)
        assert Membership.objects.for_tenant(world.acme).get(user=world.alice).role == Role.OWNER

    def test_removing_a_member_revokes_their_tokens(self, world, api):
        from controlplane.api.models import ApiToken

        api(world.bob, world.acme, scope="read")  # issues a token for bob
        response = api(world.alice, world.acme).delete("/api/v1/t/acme/members/bob/")
        assert response.status_code == 204
        tokens = ApiToken.objects.for_tenant(world.acme).filter(user=world.bob)
        assert tokens.exists() and all(t.revoked_at is not None for t in tokens)

    def test_filter_by_role(self, world, api):
        response = api(world.bob, world.acme).get("/api/v1/t/acme/members/?role=operator")
        assert [m["username"] for m in response.json()["results"]] == ["oscar"]

    def test_bad_filter_value_is_400(self, world, api):
        response = api(world.bob, world.acme).get("/api/v1/t/acme/members/?role=emperor")
        assert_error_shape(response, 400, attr="role")


@pytest.mark.django_db
class TestMyTenants:
    covered_routes = {"api:tenant-list"}

    def test_lists_only_my_tenants_with_role(self, world, api):
        add_member(world.globex, world.bob, Role.OPERATOR)
        response = api(world.bob, world.acme, scope="read").get("/api/v1/tenants/")
        assert response.status_code == 200
        assert {(t["slug"], t["role"]) for t in response.json()} == {
            ("acme", "viewer"),
            ("globex", "operator"),
        }

    def test_anonymous_is_401(self, world, api):
        assert_error_shape(api().get("/api/v1/tenants/"), 401)
