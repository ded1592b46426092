import pytest

from controlplane import context
from controlplane.tenancy import services
from controlplane.tenancy.choices import Role
from controlplane.tenancy.models import Invitation, Membership
from tests.api_mixins import TenantEndpointTests, assert_error_shape, audit_rows
from tests.factories import UserFactory, add_member


class TestMembersEndpoint(TenantEndpointTests):
    basename = "member"
    lookup_kwarg = "username"
    read_role = Role.VIEWER
    write_role = Role.ADMIN
    create_audit_action = "membership.invite"
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

    def test_create_permitted_and_audited(self, world, api):
        # POST members/ invites (202); the account joins when its holder accepts
        client = api(world.adam, world.acme)
        response = client.post(self.list_url(world.acme), self.create_data(world), format="json")
        assert response.status_code == 202, response.content
        rows = audit_rows(world.acme, "membership.invite")
        assert rows.exists() and rows.first().actor_token_id is not None


class TestInvitationsEndpoint(TenantEndpointTests):
    basename = "invitation"
    lookup_kwarg = "username"
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    delete_audit_action = "membership.invite_cancel"
    supports_create = False
    supports_update = False

    def make_object(self, world, tenant):
        with context.system_context("tests", tenant=tenant):
            return services.membership_invite(
                tenant=tenant, username=f"invitee-{tenant.slug}", role=Role.VIEWER
            )

    def lookup(self, obj):
        return obj.username


MEMBERS = "/api/v1/t/acme/members/"


@pytest.mark.django_db
class TestInvitationsRevealNothing:
    """Issue 11 item 8: adding by name no longer tells an admin which accounts exist."""

    def invite(self, api, world, username, role="viewer"):
        return api(world.adam, world.acme).post(
            MEMBERS, {"username": username, "role": role}, format="json"
        )

    def test_answer_is_the_same_for_an_account_an_inactive_one_and_none(self, world, api):
        UserFactory(username="dave", email="dave@elsewhere.example")
        UserFactory(username="gone", is_active=False, email="gone@elsewhere.example")
        answers = {}
        for name in ("dave", "gone", "nobody"):
            response = self.invite(api, world, name)
            assert response.status_code == 202, response.content
            body = response.json()
            assert body["username"] == name
            answers[name] = {k: v for k, v in body.items() if k not in ("created_at", "expires_at")}
            assert "elsewhere.example" not in response.content.decode()
        assert answers["dave"] == {**answers["nobody"], "username": "dave"}
        assert answers["gone"] == {**answers["nobody"], "username": "gone"}
        # nobody joined, and the pending list and the audit rows look alike too
        assert (
            not Membership.objects.for_tenant(world.acme)
            .filter(user__username__in=["dave", "gone"])
            .exists()
        )
        listed = api(world.adam, world.acme).get("/api/v1/t/acme/invitations/").json()
        assert [i["username"] for i in listed["results"]] == ["dave", "gone", "nobody"]
        events = audit_rows(world.acme, "membership.invite").order_by("seq")
        assert [(e.after["username"], e.target_name) for e in events] == [
            (n, f"{n} invited to Acme Corp as viewer") for n in ("dave", "gone", "nobody")
        ]

    def test_the_invited_account_accepts_and_joins(self, world, api):
        dave = UserFactory(username="dave")
        self.invite(api, world, "dave", role="operator")
        invitation = Invitation.objects.for_tenant(world.acme).get(username="dave")
        membership = services.invitation_accept(invitation=invitation, user=dave)
        assert membership.role == Role.OPERATOR
        assert not Invitation.objects.unscoped().exists()
        accepted = audit_rows(world.acme, "membership.invite_accept").get()
        assert accepted.actor_user_id == dave.pk
        assert audit_rows(world.acme, "membership.create").get().actor_user_id == dave.pk

    def test_only_the_invited_account_may_accept(self, world, api):
        from django.core.exceptions import PermissionDenied

        self.invite(api, world, "dave")
        invitation = Invitation.objects.for_tenant(world.acme).get(username="dave")
        with pytest.raises(PermissionDenied):
            services.invitation_accept(invitation=invitation, user=world.charlie)
        assert not Membership.objects.for_tenant(world.acme).filter(user=world.charlie).exists()

    def test_an_expired_invitation_cannot_be_accepted(self, world, api):
        import datetime as dt

        from django.core.exceptions import ValidationError
        from django.utils import timezone

        dave = UserFactory(username="dave")
        self.invite(api, world, "dave")
        Invitation.objects.unscoped().update(expires_at=timezone.now() - dt.timedelta(seconds=1))
        invitation = Invitation.objects.unscoped().get()
        with pytest.raises(ValidationError, match="expired"):
            services.invitation_accept(invitation=invitation, user=dave)
        assert not Membership.objects.for_tenant(world.acme).filter(user=dave).exists()

    def test_inviting_an_existing_member_says_so(self, world, api):
        response = self.invite(api, world, "bob")
        body = assert_error_shape(response, 400, attr="username")
        assert body["errors"][0]["detail"] == "bob is already a member."

    def test_admin_cannot_invite_an_owner_or_withdraw_an_owners_invitation(self, world, api):
        assert_error_shape(self.invite(api, world, "dave", role="owner"), 403)
        with context.system_context("tests", tenant=world.acme):
            services.membership_invite(tenant=world.acme, username="olga", role=Role.OWNER)
        response = api(world.adam, world.acme).delete("/api/v1/t/acme/invitations/olga/")
        assert_error_shape(response, 403)
        assert Invitation.objects.for_tenant(world.acme).filter(username="olga").exists()

    def test_bad_name_is_400(self, world, api):
        response = self.invite(api, world, "no spaces/or slashes")
        assert_error_shape(response, 400, attr="username")


@pytest.mark.django_db
class TestMemberRules:

    def test_admin_cannot_raise_anyone_to_owner_or_touch_an_owner(self, world, api):
        adam = api(world.adam, world.acme)
        for username in ("adam", "bob"):  # themselves included
            response = adam.patch(f"{MEMBERS}{username}/", {"role": "owner"}, format="json")
            assert_error_shape(response, 403)
        for role in ("admin", "viewer"):
            response = adam.patch(f"{MEMBERS}alice/", {"role": role}, format="json")
            assert_error_shape(response, 403)
        assert_error_shape(adam.delete(f"{MEMBERS}alice/"), 403)
        roles = dict(
            Membership.objects.for_tenant(world.acme).values_list("user__username", "role")
        )
        assert (roles["alice"], roles["adam"], roles["bob"]) == ("owner", "admin", "viewer")
        assert audit_rows(world.acme, "membership.update").count() == 0

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
