"""Knowledge base writes: the documents the kb_search tool searches."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from agents.models import KnowledgeDocument
from agents.services.common import full_clean
from controlplane.audit.services import audit_record


@transaction.atomic
def knowledge_document_create(
    *,
    tenant: Any,
    title: str,
    content: str,
    collection: str = "default",
    tags: list[str] | None = None,
) -> KnowledgeDocument:
    """Add a document to the tenant's knowledge base (searched by the kb_search tool)."""
    document = KnowledgeDocument(
        tenant=tenant, title=title, content=content, collection=collection, tags=tags or []
    )
    full_clean(document)
    document.save()
    audit_record(
        action="knowledge_document.create",
        target=document,
        tenant=tenant,
        after={"title": title, "collection": collection, "length": len(content)},
    )
    return document


@transaction.atomic
def knowledge_document_update(*, document: KnowledgeDocument, **changes: Any) -> KnowledgeDocument:
    before = {
        "title": document.title,
        "collection": document.collection,
        "length": len(document.content),
    }
    for field, value in changes.items():
        setattr(document, field, value)
    full_clean(document)
    document.save()
    audit_record(
        action="knowledge_document.update",
        target=document,
        tenant=document.tenant,
        before=before,
        after={
            "title": document.title,
            "collection": document.collection,
            "length": len(document.content),
        },
    )
    return document


@transaction.atomic
def knowledge_document_delete(*, document: KnowledgeDocument) -> None:
    audit_record(
        action="knowledge_document.delete",
        target=document,
        tenant=document.tenant,
        before={"title": document.title, "collection": document.collection},
    )
    document.delete()
