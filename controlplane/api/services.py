"""Issuing, using and revoking API tokens."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import secrets
import string
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from controlplane import context
from controlplane.api.choices import TokenScope
from controlplane.api.models import ApiToken
from controlplane.audit.services import audit_record, snapshot
from controlplane.rbac.roles import ROLE_RANK, SCOPE_RANK, max_token_scope, role_permissions
from controlplane.tenancy.models import Membership, Tenant

TOKEN_PREFIX = "cp_"
_ALPHABET = string.ascii_letters + string.digits
_TOKEN_FIELDS = ["name", "prefix", "scope", "expires_at"]


@dataclasses.dataclass(frozen=True)
class IssuedToken:
    """A newly created token and its plaintext, which is never stored or shown again."""

    token: ApiToken
    plaintext: str


def hash_token(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def _new_token() -> tuple[str, str]:
    prefix = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return prefix, f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"


def _a(role: str) -> str:
    return f"an {role}" if role[0] in "aeiou" else f"a {role}"


def api_token_targets(*, tenant: Tenant, creator: Any) -> QuerySet[Membership]:
    """The memberships ``creator`` may create tokens for: their own, and every member whose
    role ranks strictly below theirs (none when their role cannot create tokens)."""
    own = Membership.objects.for_tenant(tenant).filter(user=creator).first()
    if own is None or "api.add_apitoken" not in role_permissions(own.role):
        return Membership.objects.for_tenant(tenant).none()
    below = [role for role, rank in ROLE_RANK.items() if rank < ROLE_RANK[own.role]]
    return (
        Membership.objects.for_tenant(tenant)
        .filter(Q(user=creator) | Q(role__in=below))
        .select_related("user")
        .order_by("user__username")
    )


def _refusal(*, creator: Any, creator_role: str | None, user: Any, user_role: str) -> str | None:
    """Why ``creator`` may not create a token acting as ``user``, or None when they may.

    The rule: a member whose role allows creating tokens may create them for themselves,
    and for members whose role ranks strictly below their own (an owner for admins and
    below, an admin for operators and viewers); never for an equal or a higher role, since
    the token's plaintext would let them act as that person.
    """
    if creator_role is None or "api.add_apitoken" not in role_permissions(creator_role):
        return "Your role in this tenant does not allow creating API tokens."
    if creator.pk == user.pk or ROLE_RANK[user_role] < ROLE_RANK[creator_role]:
        return None
    return (
        f"You can create API tokens only for yourself and for members whose role is below "
        f"yours ({creator_role}): {user.get_username()} is {_a(user_role)}."
    )


def api_token_create(
    *,
    tenant: Tenant,
    user: Any,
    name: str,
    scope: str = TokenScope.READ,
    expires_in_days: int | None = None,
    created_by: Any = None,
) -> IssuedToken:
    """Issue a token acting as ``user`` (a member of ``tenant``); plaintext returned once.

    ``created_by`` is the person asking (None: the system, e.g. ``create_api_token``). A
    person may create tokens for themselves and for members whose role ranks strictly below
    theirs (``api_token_targets``); any other request is refused with PermissionDenied and
    audited as ``permission.denied``. For everyone, the scope may not exceed what the
    user's role can use (admin for admins and owners, write for operators and viewers): a wider
    one is a ValidationError on ``scope``, never silently narrowed. The token and its audit
    row (saying who created it for whom) are written in one transaction; this function is
    not atomic itself, so a refusal's audit row is kept.
    """
    if scope not in TokenScope.values:
        raise ValidationError({"scope": f"Choose one of {', '.join(TokenScope.values)}."})
    memberships = {
        m.user_id: m.role
        for m in Membership.objects.for_tenant(tenant).filter(
            user_id__in=[user.pk] + ([created_by.pk] if created_by is not None else [])
        )
    }
    user_role = memberships.get(user.pk)
    if user_role is None:
        raise ValidationError({"user": f"{user.get_username()} is not a member of {tenant.slug}."})
    if created_by is not None:
        reason = _refusal(
            creator=created_by,
            creator_role=memberships.get(created_by.pk),
            user=user,
            user_role=user_role,
        )
        if reason is not None:
            with context.tenant_context(tenant):
                audit_record(
                    action="permission.denied",
                    tenant=tenant,
                    metadata={
                        "permission": "api.add_apitoken",
                        "reason": "token_for_user",
                        "role": memberships.get(created_by.pk),
                        "for_user": user.get_username(),
                        "for_role": user_role,
                        "scope": scope,
                    },
                )
            raise PermissionDenied(reason)
    widest = max_token_scope(user_role)
    if SCOPE_RANK[scope] > SCOPE_RANK[widest]:
        allowed = [s for s in TokenScope.values if SCOPE_RANK[s] <= SCOPE_RANK[widest]]
        raise ValidationError(
            {
                "scope": f"{user.get_username()} is {_a(user_role)}, so their tokens can have "
                f"scope {' or '.join(allowed)}, not {scope}."
            }
        )
    if expires_in_days is None:
        expires_in_days = settings.API_TOKEN_DEFAULT_EXPIRY_DAYS
    if not 1 <= expires_in_days <= 3650:
        raise ValidationError({"expires_in_days": "Give a number of days from 1 to 3650."})
    return _issue(
        tenant=tenant,
        user=user,
        name=name,
        scope=scope,
        expires_in_days=expires_in_days,
        created_by=created_by,
    )


@transaction.atomic
def _issue(
    *,
    tenant: Tenant,
    user: Any,
    name: str,
    scope: str,
    expires_in_days: int,
    created_by: Any,
) -> IssuedToken:
    while True:
        prefix, plaintext = _new_token()
        if not ApiToken.objects.unscoped().filter(prefix=prefix).exists():
            break
    token = ApiToken(
        tenant=tenant,
        user=user,
        name=name,
        prefix=prefix,
        token_hash=hash_token(plaintext),
        scope=scope,
        created_by=created_by,
        expires_at=timezone.now() + dt.timedelta(days=expires_in_days),
    )
    token.full_clean(exclude=["tenant", "user", "created_by"], validate_unique=False)
    token.save()
    system = context.current().system
    after = snapshot(token, _TOKEN_FIELDS)
    after["for_user"] = user.get_username()
    after["created_by"] = (
        created_by.get_username() if created_by is not None else f"system:{system or 'unknown'}"
    )
    audit_record(action="api_token.create", target=token, tenant=tenant, after=after)
    return IssuedToken(token=token, plaintext=plaintext)


@transaction.atomic
def api_token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke a token; idempotent (revoking a revoked token changes nothing and audits nothing)."""
    token = ApiToken.objects.unscoped().select_for_update().get(pk=token.pk)
    if token.revoked_at is not None:
        return token
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    audit_record(
        action="api_token.revoke",
        target=token,
        tenant=token.tenant,
        before={"status": "active"},
        after={"status": "revoked"},
    )
    return token


def api_token_revoke_all_for_user(*, tenant: Tenant, user: Any) -> int:
    """Revoke every active token of ``user`` in ``tenant`` (when they leave it)."""
    tokens = ApiToken.objects.for_tenant(tenant).filter(user=user, revoked_at__isnull=True)
    count = 0
    for token in tokens:
        api_token_revoke(token=token)
        count += 1
    return count


def api_token_authenticate(plaintext: str) -> ApiToken | None:
    """The active token matching ``plaintext``, or None. Touches last-used time, rate-limited."""
    if not plaintext.startswith(TOKEN_PREFIX) or plaintext.count("_") < 2:
        return None
    prefix = plaintext[len(TOKEN_PREFIX) : len(TOKEN_PREFIX) + 8]
    token = (
        ApiToken.objects.unscoped().select_related("user", "tenant").filter(prefix=prefix).first()
    )
    if token is None or not hmac.compare_digest(token.token_hash, hash_token(plaintext)):
        return None
    if not token.is_active or not token.user.is_active:
        return None
    now = timezone.now()
    touch_every = dt.timedelta(seconds=settings.API_TOKEN_TOUCH_SECONDS)
    if token.last_used_at is None or now - token.last_used_at >= touch_every:
        ApiToken.objects.unscoped().filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
