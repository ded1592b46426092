"""RBAC: roles map to real permissions and nest; token scopes cap roles; guardian grants."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.http import Http404
from guardian.models import UserObjectPermission

from controlplane import context
from controlplane.api.models import ApiToken
from controlplane.api.services import api_token_create
from controlplane.rbac.access import Access, resolve_access
from controlplane.rbac.grants import (
    CrossTenantGrant,
    grant_object_perm,
    has_object_perm,
    objects_granted,
    remove_object_grants,
    revoke_object_perm,
    users_granted,
)
from controlplane.rbac.roles import (
    ADMINISTRATIVE_PERMISSIONS,
    ROLE_PERMISSIONS,
    ROLE_RANK,
    role_permissions,
    scope_allows,
)
from controlplane.tenancy.choices import Role
from controlplane.tenancy.models import Membership
from tests.factories import add_member

ROLES_LOW_TO_HIGH = sorted(Role.values, key=lambda role: ROLE_RANK[role])
ALL_ROLE_PERMISSIONS = sorted(set().union(*ROLE_PERMISSIONS.values()))
SCOPES = ["read", "write", "admin"]


def issue_token(tenant, user, scope: str = "read") -> ApiToken:
    with context.system_context("tests", tenant=tenant):
        return api_token_create(tenant=tenant, user=user, name="rbac", scope=scope).token


# -- roles ----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("perm", sorted(set(ALL_ROLE_PERMISSIONS) | ADMINISTRATIVE_PERMISSIONS))
def test_every_named_permission_is_a_real_permission(perm):
    app_label, codename = perm.split(".", 1)
    assert Permission.objects.filter(
        content_type__app_label=app_label, codename=codename
    ).exists(), f"{perm} names no Permission row: fix the name or add it to a model's Meta"


def test_every_role_has_permissions_and_a_rank():
    assert set(ROLE_PERMISSIONS) == set(Role.values)
    assert set(ROLE_RANK) == set(Role.values)
    assert ROLES_LOW_TO_HIGH == [Role.VIEWER, Role.OPERATOR, Role.ADMIN, Role.OWNER]
    assert all(ROLE_PERMISSIONS[role] for role in Role.values)


def test_roles_nest():
    viewer, operator, admin, owner = (role_permissions(r) for r in ROLES_LOW_TO_HIGH)
    assert viewer <= operator < admin < owner
    assert "tenancy.change_tenant" in owner - admin
    assert {"api.add_apitoken", "tenancy.manage_members"} <= admin - operator


def test_administrative_permissions_belong_to_admins_only():
    assert role_permissions(Role.OWNER) >= ADMINISTRATIVE_PERMISSIONS
    assert not ADMINISTRATIVE_PERMISSIONS & role_permissions(Role.OPERATOR)
    assert ADMINISTRATIVE_PERMISSIONS - role_permissions(Role.ADMIN) == {"tenancy.change_tenant"}


def test_unknown_role_has_no_permissions():
    assert role_permissions("emperor") == frozenset()
    assert not Access(tenant=None, user=None, role="emperor").has_perm("tenancy.view_tenant")


# -- token scopes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("perm", "read", "write", "admin"),
    [
        ("tenancy.view_membership", True, True, True),
        ("audit.view_auditevent", True, True, True),
        ("runs.add_run", False, True, True),
        ("runs.change_run", False, True, True),
        ("agents.delete_agent", False, True, True),
        ("runs.cancel_run", False, True, True),
        ("tenancy.add_membership", False, False, True),
        ("tenancy.manage_members", False, False, True),
        ("api.add_apitoken", False, False, True),
        ("api.delete_apitoken", False, False, True),
        ("tenancy.change_tenant", False, False, True),
        ("api.view_apitoken", False, False, True),
    ],
)
def test_scope_allows(perm, read, write, admin):
    assert scope_allows("read", perm) is read
    assert scope_allows("write", perm) is write
    assert scope_allows("admin", perm) is admin


@pytest.mark.parametrize("perm", sorted(set(ALL_ROLE_PERMISSIONS) | {"runs.add_run"}))
def test_scopes_nest_read_write_admin(perm):
    allowed = [scope_allows(scope, perm) for scope in SCOPES]
    assert allowed == sorted(allowed), f"{perm}: a narrower scope allows what a wider one refuses"


def test_unknown_scope_allows_no_writes():
    assert not scope_allows("superuser", "runs.add_run")
    assert not scope_allows("", "tenancy.change_tenant")


def test_token_scope_caps_the_role():
    owner = Access(tenant=None, user=None, role=Role.OWNER)
    assert owner.has_perm("tenancy.change_tenant")
    assert owner.permissions == role_permissions(Role.OWNER)

    owner_write = Access(tenant=None, user=None, role=Role.OWNER, token_scope="write")
    assert owner_write.has_perm("tenancy.view_membership")
    assert not owner_write.has_perm("tenancy.change_tenant")
    assert not owner_write.has_perm("api.add_apitoken")
    assert not owner_write.permissions & ADMINISTRATIVE_PERMISSIONS

    owner_read = Access(tenant=None, user=None, role=Role.OWNER, token_scope="read")
    assert owner_read.has_perm("audit.view_auditevent")
    assert not owner_read.has_perm("tenancy.change_membership")
    assert all(p.split(".")[1].startswith("view_") for p in owner_read.permissions)

    owner_admin = Access(tenant=None, user=None, role=Role.OWNER, token_scope="admin")
    assert owner_admin.permissions == role_permissions(Role.OWNER)


def test_token_scope_never_raises_the_role():
    viewer_admin = Access(tenant=None, user=None, role=Role.VIEWER, token_scope="admin")
    assert viewer_admin.has_perm("tenancy.view_membership")
    assert not viewer_admin.has_perm("api.add_apitoken")
    assert not viewer_admin.has_perm("tenancy.change_tenant")
    assert viewer_admin.permissions == role_permissions(Role.VIEWER)


# -- resolve_access -------------------------------------------------------------------


@pytest.mark.django_db
def test_resolve_access_gives_the_members_role(world):
    access = resolve_access(user=world.adam, tenant_slug="acme")
    assert access.tenant == world.acme
    assert access.user == world.adam
    assert access.role == Role.ADMIN
    assert access.token_scope is None
    assert resolve_access(user=world.bob, tenant_slug="acme").role == Role.VIEWER


@pytest.mark.django_db
def test_resolve_access_carries_the_token_scope(world):
    token = issue_token(world.acme, world.alice, scope="write")
    access = resolve_access(user=world.alice, tenant_slug="acme", token=token)
    assert access.role == Role.OWNER
    assert access.token_scope == "write"
    assert not access.has_perm("tenancy.change_tenant")


@pytest.mark.django_db
def test_resolve_access_is_404_for_non_members(world):
    with pytest.raises(Http404):
        resolve_access(user=world.charlie, tenant_slug="acme")
    with pytest.raises(Http404):
        resolve_access(user=world.alice, tenant_slug="no-such-tenant")


@pytest.mark.django_db
def test_resolve_access_is_404_for_anonymous(world):
    from django.contrib.auth.models import AnonymousUser

    for user in (None, AnonymousUser()):
        with pytest.raises(Http404):
            resolve_access(user=user, tenant_slug="acme")


@pytest.mark.django_db
def test_resolve_access_is_404_for_an_inactive_tenant(world):
    world.acme.is_active = False
    world.acme.save(update_fields=["is_active"])
    with pytest.raises(Http404):
        resolve_access(user=world.alice, tenant_slug="acme")


@pytest.mark.django_db
def test_resolve_access_is_404_for_a_token_of_another_tenant(world):
    add_member(world.globex, world.alice, Role.VIEWER)  # alice belongs to both tenants
    globex_token = issue_token(world.globex, world.alice)
    with pytest.raises(Http404):
        resolve_access(user=world.alice, tenant_slug="acme", token=globex_token)
    # the same token is fine on its own tenant
    access = resolve_access(user=world.alice, tenant_slug="globex", token=globex_token)
    assert access.tenant == world.globex and access.role == Role.VIEWER


# -- guardian object grants -----------------------------------------------------------


@pytest.fixture
def acme_token(world) -> ApiToken:
    return issue_token(world.acme, world.alice)


@pytest.mark.django_db
def test_object_grant_is_seen_by_has_object_perm_and_access(world, acme_token):
    other_token = issue_token(world.acme, world.adam)
    assert not has_object_perm(world.bob, "api.view_apitoken", acme_token)
    bob = resolve_access(user=world.bob, tenant_slug="acme")
    assert not bob.has_perm("api.view_apitoken", acme_token)

    grant_object_perm(user=world.bob, perm="api.view_apitoken", obj=acme_token)

    assert has_object_perm(world.bob, "api.view_apitoken", acme_token)
    assert not has_object_perm(world.bob, "api.view_apitoken", other_token)
    assert not has_object_perm(world.bob, "api.delete_apitoken", acme_token)
    assert not has_object_perm(world.oscar, "api.view_apitoken", acme_token)
    assert bob.has_perm("api.view_apitoken", acme_token)
    assert not bob.has_perm("api.view_apitoken")  # the grant is on the object only
    assert not bob.has_perm("api.view_apitoken", other_token)
    tokens = ApiToken.objects.for_tenant(world.acme)
    assert list(objects_granted(world.bob, "api.view_apitoken", tokens)) == [acme_token]
    assert users_granted(acme_token) == {world.bob: ["view_apitoken"]}


@pytest.mark.django_db
def test_token_scope_caps_object_grants_too(world, acme_token):
    grant_object_perm(user=world.bob, perm="api.delete_apitoken", obj=acme_token)
    token = issue_token(world.acme, world.bob, scope="read")
    access = resolve_access(user=world.bob, tenant_slug="acme", token=token)
    assert not access.has_perm("api.delete_apitoken", acme_token)
    assert access.refused_by_scope("api.delete_apitoken", acme_token)
    # a viewer cannot hold an admin-scope token: the grant serves their session only
    access = resolve_access(user=world.bob, tenant_slug="acme")
    assert access.has_perm("api.delete_apitoken", acme_token)
    assert access.refused_by_scope("api.delete_apitoken", acme_token) is False


@pytest.mark.django_db
def test_grant_on_a_membership_object(world):
    membership = Membership.objects.for_tenant(world.acme).get(user=world.bob)
    grant_object_perm(user=world.oscar, perm="tenancy.change_membership", obj=membership)
    assert has_object_perm(world.oscar, "tenancy.change_membership", membership)
    oscar = resolve_access(user=world.oscar, tenant_slug="acme")
    assert not oscar.has_perm("tenancy.change_membership")
    assert oscar.has_perm("tenancy.change_membership", membership)


@pytest.mark.django_db
def test_grant_to_a_non_member_is_refused(world, acme_token):
    with pytest.raises(CrossTenantGrant, match="not a member"):
        grant_object_perm(user=world.charlie, perm="api.view_apitoken", obj=acme_token)
    assert not has_object_perm(world.charlie, "api.view_apitoken", acme_token)
    assert not UserObjectPermission.objects.filter(user=world.charlie).exists()


@pytest.mark.django_db
def test_revoke_object_perm_removes_one_grant(world, acme_token):
    grant_object_perm(user=world.bob, perm="api.view_apitoken", obj=acme_token)
    grant_object_perm(user=world.bob, perm="api.delete_apitoken", obj=acme_token)
    revoke_object_perm(user=world.bob, perm="api.delete_apitoken", obj=acme_token)
    assert has_object_perm(world.bob, "api.view_apitoken", acme_token)
    assert not has_object_perm(world.bob, "api.delete_apitoken", acme_token)


@pytest.mark.django_db
def test_remove_object_grants_deletes_every_grant_on_the_object(world, acme_token):
    other_token = issue_token(world.acme, world.adam)
    grant_object_perm(user=world.bob, perm="api.view_apitoken", obj=acme_token)
    grant_object_perm(user=world.oscar, perm="api.view_apitoken", obj=acme_token)
    grant_object_perm(user=world.bob, perm="api.view_apitoken", obj=other_token)
    assert UserObjectPermission.objects.filter(object_pk=str(acme_token.pk)).count() == 2

    remove_object_grants(acme_token)

    assert not has_object_perm(world.bob, "api.view_apitoken", acme_token)
    assert not has_object_perm(world.oscar, "api.view_apitoken", acme_token)
    assert users_granted(acme_token) == {}
    # grants on other objects are untouched
    assert has_object_perm(world.bob, "api.view_apitoken", other_token)
