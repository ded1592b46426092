"""Writes to tenants and memberships. Each is atomic and audited in the same transaction."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from controlplane import context, hooks
from controlplane.audit.services import audit_record, snapshot
from controlplane.entities import Entity
from controlplane.rbac.roles import ROLE_RANK
from controlplane.tenancy.choices import Role
from controlplane.tenancy.models import Invitation, Membership, Tenant

MEMBERSHIPS = Entity(Membership, "membership", fields=("user", "role"))
# an invitation's events are the membership's: membership.invite, .invite_accept, ...
INVITATIONS = Entity(Invitation, "membership", fields=("username", "role", "expires_at"))
INVITATION_DAYS = 14


@transaction.atomic
def tenant_create(*, slug: str, name: str, owner: Any | None = None) -> Tenant:
    """Create a tenant (and its audit chain); ``owner`` becomes its first owner."""
    if Tenant.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": f"A tenant with slug {slug!r} already exists."})
    tenant = Tenant(slug=slug, name=name)
    tenant.full_clean()
    tenant.save()
    with context.tenant_context(tenant):
        audit_record(
            action="tenant.create", target=tenant, after=snapshot(tenant, ["slug", "name"])
        )
        if owner is not None:
            membership = Membership.objects.create(tenant=tenant, user=owner, role=Role.OWNER)
            MEMBERSHIPS.record("create", membership, after=MEMBERSHIPS.snapshot(membership))
    hooks.tenant_created.call(tenant)  # policies: the tenant's default policy
    return tenant


def _check_can_assign(actor_role: str | None, role: str, current: str | None = None) -> None:
    """Only an owner grants or removes the owner role; nobody grants above their own role."""
    if actor_role is None:  # system actors (commands, seeding)
        return
    if Role.OWNER in (role, current) and actor_role != Role.OWNER:
        raise PermissionDenied("Only an owner can grant, change or remove the owner role.")
    if ROLE_RANK[Role(role)] > ROLE_RANK[Role(actor_role)]:
        raise PermissionDenied("You cannot grant a role above your own.")


def _ensure_an_owner_remains(membership: Membership) -> None:
    if membership.role != Role.OWNER:
        return
    owners = Membership.objects.for_tenant(membership.tenant).filter(role=Role.OWNER)
    if not owners.exclude(pk=membership.pk).exists():
        raise ValidationError({"role": "A tenant must keep at least one owner."})


@transaction.atomic
def membership_add(
    *, tenant: Tenant, user: Any, role: str, actor_role: str | None = None
) -> Membership:
    """Add ``user`` to ``tenant`` with ``role``; refuses a duplicate membership."""
    _check_can_assign(actor_role, role)
    if Membership.objects.for_tenant(tenant).filter(user=user).exists():
        raise ValidationError({"user": f"{user.get_username()} is already a member."})
    membership = Membership.objects.for_tenant(tenant).create(tenant=tenant, user=user, role=role)
    MEMBERSHIPS.record("create", membership, after=MEMBERSHIPS.snapshot(membership))
    return membership


@transaction.atomic
def membership_change_role(
    *, membership: Membership, role: str, actor_role: str | None = None
) -> Membership:
    """Change a member's role; the last owner cannot be demoted."""
    membership = Membership.objects.unscoped().select_for_update().get(pk=membership.pk)
    _check_can_assign(actor_role, role, membership.role)
    if membership.role == role:
        return membership
    if role != Role.OWNER:
        _ensure_an_owner_remains(membership)
    before = MEMBERSHIPS.snapshot(membership)
    membership.role = role
    membership.save(update_fields=["role", "updated_at"])
    MEMBERSHIPS.record("update", membership, before=before, after=MEMBERSHIPS.snapshot(membership))
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor_role: str | None = None) -> None:
    """Remove a member (and revoke their API tokens in this tenant); keeps one owner."""
    from controlplane.api.services import api_token_revoke_all_for_user
    from controlplane.rbac.grants import remove_user_grants_in_tenant

    membership = Membership.objects.unscoped().select_for_update().get(pk=membership.pk)
    _check_can_assign(actor_role, membership.role, membership.role)
    _ensure_an_owner_remains(membership)
    before = MEMBERSHIPS.snapshot(membership)
    api_token_revoke_all_for_user(tenant=membership.tenant, user=membership.user)
    # a grant needs membership; kept, it would come back if the user were added again
    remove_user_grants_in_tenant(user=membership.user, tenant=membership.tenant)
    MEMBERSHIPS.delete(membership, before=before)


@transaction.atomic
def membership_invite(
    *,
    tenant: Tenant,
    username: str,
    role: str,
    actor_role: str | None = None,
    invited_by: Any = None,
) -> Invitation:
    """Invite the account named ``username`` to ``tenant`` with ``role``; audited.

    Whether an account of that name exists, is inactive or does not exist, the outcome is
    the same: an invitation row and a ``membership.invite`` event, nothing read from any
    account. So the answer tells an admin nothing about people outside the tenant; the
    name joins only when its holder accepts (``invitation_accept``). Refused: a role the
    actor may not grant (403) and a name that is already a member (400), both things the
    actor can see anyway. Inviting a name again renews the pending invitation.
    """
    _check_can_assign(actor_role, role)
    if Membership.objects.for_tenant(tenant).filter(user__username=username).exists():
        raise ValidationError({"username": f"{username} is already a member."})
    invitation, _ = Invitation.objects.for_tenant(tenant).update_or_create(
        tenant=tenant,
        username=username,
        defaults={
            "role": role,
            "invited_by": invited_by,
            "expires_at": timezone.now() + dt.timedelta(days=INVITATION_DAYS),
        },
    )
    INVITATIONS.record("invite", invitation, after=INVITATIONS.snapshot(invitation))
    return invitation


def _pending_for(invitation: Invitation, user: Any) -> Invitation:
    """Lock ``invitation`` and check it is ``user``'s to answer and still open."""
    invitation = (Invitation.objects.unscoped().select_for_update().select_related("tenant")).get(
        pk=invitation.pk
    )
    if invitation.username != user.get_username() or not user.is_active:
        raise PermissionDenied("This invitation is for another account.")
    if invitation.expires_at <= timezone.now() or not invitation.tenant.is_active:
        raise ValidationError("This invitation has expired: ask for a new one.")
    return invitation


@transaction.atomic
def invitation_accept(*, invitation: Invitation, user: Any) -> Membership:
    """``user``, the invited account's holder, joins the tenant with the invited role.

    Only that account may accept, before the invitation expires; the invitation is then
    deleted. Audited in the tenant's chain with ``user`` as the actor.
    """
    invitation = _pending_for(invitation, user)
    # the person answering is the actor, whatever the request's context says
    with context.using(tenant=invitation.tenant, user=user, token=None, system=None):
        membership = membership_add(tenant=invitation.tenant, user=user, role=invitation.role)
        INVITATIONS.record("invite_accept", invitation, before=INVITATIONS.snapshot(invitation))
    invitation.delete()
    return membership


@transaction.atomic
def invitation_decline(*, invitation: Invitation, user: Any) -> None:
    """``user``, the invited account's holder, declines; the invitation is deleted, audited."""
    invitation = _pending_for(invitation, user)
    with context.using(tenant=invitation.tenant, user=user, token=None, system=None):
        INVITATIONS.record("invite_decline", invitation, before=INVITATIONS.snapshot(invitation))
    invitation.delete()


@transaction.atomic
def invitation_cancel(*, invitation: Invitation, actor_role: str | None = None) -> None:
    """Withdraw a pending invitation (an owner's only by an owner); audited."""
    invitation = Invitation.objects.unscoped().select_for_update().get(pk=invitation.pk)
    _check_can_assign(actor_role, invitation.role)
    INVITATIONS.record("invite_cancel", invitation, before=INVITATIONS.snapshot(invitation))
    invitation.delete()


@transaction.atomic
def user_create(*, username: str, email: str = "", password: str | None = None) -> Any:
    """Create a site user account (audited in the global chain). Password validated if given."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.password_validation import validate_password

    User = get_user_model()
    if User.objects.filter(username=username).exists():
        raise ValidationError({"username": f"A user named {username!r} already exists."})
    user = User(username=username, email=email)
    if password:
        validate_password(password, user)
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.full_clean(exclude=["password"])
    user.save()
    audit_record(
        action="user.create", target=user, tenant=None, after={"username": username, "email": email}
    )
    return user
