"""Recording permission denials in the audit trail (API and dashboard alike)."""

from __future__ import annotations

from typing import Any

from controlplane import context
from controlplane.audit.services import audit_record


def record_denial(
    *, request: Any, access: Any, permission: str, target: Any = None, reason: str | None = None
) -> None:
    """Audit that a member was refused ``permission``; written in its own transaction.

    ``reason`` says what refused it when more than the role is involved (``token_scope``).
    """
    metadata = {
        "permission": permission,
        "method": request.method,
        "path": request.path,
        "role": access.role,
        "token_scope": access.token_scope,
    }
    if reason is not None:
        metadata["reason"] = reason
    with context.tenant_context(access.tenant):
        audit_record(
            action="permission.denied",
            target=target,
            tenant=access.tenant,
            metadata=metadata,
        )
