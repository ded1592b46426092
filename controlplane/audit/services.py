"""Writing the audit trail: every state-changing service calls ``audit_record`` in its
transaction."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, models, transaction
from django.utils import timezone

from controlplane import context
from controlplane.audit.hashing import event_hash, fields_of, to_json_value
from controlplane.audit.models import GENESIS_HASH, ActorType, AuditChain, AuditEvent
from controlplane.audit.redaction import redact_secrets

GLOBAL_CHAIN = "global"
FROM_CONTEXT: Any = object()  # default for ``tenant``: the context's tenant


def chain_key(tenant: Any) -> str:
    return f"tenant:{tenant.pk}" if tenant is not None else GLOBAL_CHAIN


def _actor(ctx: context.RequestContext) -> tuple[str, Any, Any, str]:
    if ctx.token is not None:
        user = ctx.token.user
        return ActorType.TOKEN, user, ctx.token, f"{user.get_username()} (token {ctx.token.prefix})"
    if ctx.user is not None and getattr(ctx.user, "is_authenticated", False):
        return ActorType.USER, ctx.user, None, ctx.user.get_username()
    if ctx.system:
        return ActorType.SYSTEM, None, None, f"system:{ctx.system}"
    return ActorType.ANONYMOUS, None, None, "anonymous"


def _lock_chain(tenant: Any) -> AuditChain:
    key = chain_key(tenant)
    chain = AuditChain.objects.select_for_update().filter(key=key).first()
    if chain is None:
        # First event of this chain: create the head; a concurrent creator wins
        # the unique key and we then lock its row.
        try:
            with transaction.atomic():
                AuditChain.objects.create(key=key, tenant=tenant, last_hash=GENESIS_HASH)
        except IntegrityError:
            pass
        chain = AuditChain.objects.select_for_update().get(key=key)
    return chain


# savepoint=False: inside the caller's transaction an audit entry is all or nothing with the
# action it records (an error here rolls both back), so a savepoint would only cost two
# round trips per audited action.
@transaction.atomic(savepoint=False)
def audit_record(
    *,
    action: str,
    target: models.Model | None = None,
    target_type: str = "",
    target_id: str = "",
    target_name: str = "",
    before: Any = None,
    after: Any = None,
    metadata: dict[str, Any] | None = None,
    tenant: Any = FROM_CONTEXT,
    actor_name: str | None = None,
) -> AuditEvent:
    """Append one event to ``tenant``'s chain (default: the context's; None: the global chain).

    Atomic with the caller's transaction: if this fails, the caller's change is
    rolled back too. Secret-looking keys in ``before``/``after``/``metadata``
    are redacted before hashing.
    """
    ctx = context.current()
    if tenant is FROM_CONTEXT:
        tenant = ctx.tenant
    if target is not None:
        # a model that moved between apps keeps the type its older rows were written with
        target_type = target_type or getattr(target, "audit_type", target._meta.label_lower)
        target_id = target_id or str(target.pk)
        target_name = target_name or str(target)[:300]
    actor_type, user, token, name = _actor(ctx)
    chain = _lock_chain(tenant)
    event = AuditEvent(
        chain=chain.key,
        seq=chain.last_seq + 1,
        tenant=tenant,
        created_at=timezone.now(),
        actor_type=actor_type,
        actor_user=user,
        actor_token=token,
        actor_name=(actor_name or name)[:200],
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        target_name=target_name[:300],
        before=to_json_value(redact_secrets(before)),
        after=to_json_value(redact_secrets(after)),
        metadata=to_json_value(redact_secrets(metadata or {})),
        request_id=ctx.request_id,
        ip=ctx.ip or "",
        prev_hash=chain.last_hash,
    )
    event.hash = event_hash(chain.last_hash, fields_of(event))
    event.save(force_insert=True)
    AuditChain.objects.filter(pk=chain.pk).update(last_seq=event.seq, last_hash=event.hash)
    return event


def snapshot(obj: models.Model, fields: list[str]) -> dict[str, Any]:
    """A JSON-able dict of ``fields`` of ``obj`` for before/after diffs."""
    out: dict[str, Any] = {}
    for name in fields:
        value = getattr(obj, name)
        if isinstance(value, models.Model):
            value = str(value)
        out[name] = value
    return to_json_value(out)
