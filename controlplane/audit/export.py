"""Streaming JSONL and CSV exports of audit events (constant memory for any size)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator

from controlplane.audit.hashing import HASHED_FIELDS
from controlplane.audit.models import AuditEvent

# what an event records (its hashed fields) without the internal ids, then its chain links
COLUMNS = [
    name
    for name in HASHED_FIELDS
    if name not in ("chain", "tenant_id", "actor_user_id", "actor_token_id")
] + ["prev_hash", "hash"]


def _row(event: AuditEvent) -> dict:
    row = {name: getattr(event, name) for name in COLUMNS}
    row["created_at"] = event.created_at.isoformat()
    return row


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value):
    """Neutralise spreadsheet formulas (a username like '=HYPERLINK(...)' stays text)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def export_jsonl(events: Iterable[AuditEvent]) -> Iterator[str]:
    for event in events:
        yield json.dumps(_row(event), ensure_ascii=False, default=str) + "\n"


def export_csv(events: Iterable[AuditEvent]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for event in events:
        row = _row(event)
        writer.writerow(
            [
                _csv_cell(
                    json.dumps(row[c], default=str)
                    if c in ("before", "after", "metadata")
                    else row[c]
                )
                for c in COLUMNS
            ]
        )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()
