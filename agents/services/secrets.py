"""Secret writes: stored encrypted; values are never returned or audited."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from agents.models import Secret
from controlplane.audit.services import audit_record
from controlplane.entities import full_clean


@transaction.atomic
def secret_create(*, tenant: Any, name: str, value: str, description: str = "") -> Secret:
    """Store a named secret, encrypted. The value is never returned or audited."""
    if Secret.objects.for_tenant(tenant).filter(name=name).exists():
        raise ValidationError({"name": f"A secret named {name!r} already exists."})
    if not value:
        raise ValidationError({"value": "Give the secret's value."})
    secret = Secret(tenant=tenant, name=name, value=value, description=description)
    full_clean(secret)
    secret.save()
    audit_record(
        action="secret.create",
        target=secret,
        tenant=tenant,
        after={"name": name, "description": description, "value": "set"},
    )
    return secret


@transaction.atomic
def secret_update(
    *, secret: Secret, value: str | None = None, description: str | None = None
) -> Secret:
    """Replace a secret's value and/or description (audited without the value)."""
    changes = {}
    if value is not None:
        if not value:
            raise ValidationError({"value": "A secret cannot be empty."})
        secret.value = value
        changes["value"] = "changed"
    if description is not None and description != secret.description:
        changes["description"] = description
        secret.description = description
    secret.save()
    audit_record(action="secret.update", target=secret, tenant=secret.tenant, after=changes)
    return secret


@transaction.atomic
def secret_delete(*, secret: Secret) -> None:
    audit_record(
        action="secret.delete", target=secret, tenant=secret.tenant, before={"name": secret.name}
    )
    secret.delete()
