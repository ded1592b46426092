"""Knowledge base writes: the documents the kb_search tool searches."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from agents.models import KnowledgeDocument
from controlplane.entities import Entity


class _Documents(Entity):
    """Audit rows show a document's size, not its text."""

    def snapshot(self, obj: Any, **extra: Any) -> dict[str, Any]:
        return super().snapshot(obj, length=len(obj.content), **extra)


DOCUMENTS = _Documents(KnowledgeDocument, "knowledge_document", fields=("title", "collection"))


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
    return DOCUMENTS.create(document)


@transaction.atomic
def knowledge_document_update(*, document: KnowledgeDocument, **changes: Any) -> KnowledgeDocument:
    """Edit a document's title, text, collection or tags; audited with its size."""
    return DOCUMENTS.update(document, changes)


@transaction.atomic
def knowledge_document_delete(*, document: KnowledgeDocument) -> None:
    """Remove a document from the knowledge base; audited by title and collection."""
    DOCUMENTS.delete(document, before={"title": document.title, "collection": document.collection})
