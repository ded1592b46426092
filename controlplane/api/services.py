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
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from controlplane.api.choices import TokenScope
from controlplane.api.models import ApiToken
from controlplane.audit.services import audit_record, snapshot
from controlplane.tenancy.models import Membership, Tenant

TOKEN_PREFIX = "cp_"
_ALPHABET = string.ascii_letters + string.digits
_TOKEN_FIELDS = ["name", "prefix", "scope", "user", "expires_at"]


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


@transaction.atomic
def api_token_create(
    *,
    tenant: Tenant,
    user: Any,
    name: str,
    scope: str = TokenScope.READ,
    expires_in_days: int | None = None,
    created_by: Any = None,
) -> IssuedToken:
    """Issue a token for ``user`` (a member of ``tenant``). Audited; plaintext returned once."""
    if scope not in TokenScope.values:
        raise ValidationError({"scope": f"Choose one of {', '.join(TokenScope.values)}."})
    if not Membership.objects.for_tenant(tenant).filter(user=user).exists():
        raise ValidationError({"user": f"{user.get_username()} is not a member of {tenant.slug}."})
    if expires_in_days is None:
        expires_in_days = settings.API_TOKEN_DEFAULT_EXPIRY_DAYS
    if not 1 <= expires_in_days <= 3650:
        raise ValidationError({"expires_in_days": "Give a number of days from 1 to 3650."})
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
    audit_record(
        action="api_token.create", target=token, tenant=tenant, after=snapshot(token, _TOKEN_FIELDS)
    )
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
