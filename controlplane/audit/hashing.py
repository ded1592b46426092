"""Canonical form and hash of an audit event; shared by the writer and the verifier."""

from __future__ import annotations

import hashlib
import json
from typing import Any

HASHED_FIELDS = (
    "chain",
    "seq",
    "tenant_id",
    "created_at",
    "actor_type",
    "actor_user_id",
    "actor_token_id",
    "actor_name",
    "action",
    "target_type",
    "target_id",
    "target_name",
    "before",
    "after",
    "metadata",
    "request_id",
    "ip",
)


def to_json_value(value: Any) -> Any:
    """Normalise to what a JSON column gives back, so the hash survives a round trip."""
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def canonical(fields: dict[str, Any]) -> str:
    data = {name: fields[name] for name in HASHED_FIELDS}
    data["created_at"] = fields["created_at"].isoformat()
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def event_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical(fields)).encode()).hexdigest()


def fields_of(event: Any) -> dict[str, Any]:
    return {name: getattr(event, name) for name in HASHED_FIELDS}
