"""Knowledge base pages: list, add, one document (edit, delete)."""

from __future__ import annotations

from agents.filtersets import KnowledgeDocumentFilterSet
from agents.forms.knowledge import KnowledgeDocumentForm
from agents.models import KnowledgeDocument
from agents.services.knowledge import (
    knowledge_document_create,
    knowledge_document_delete,
    knowledge_document_update,
)
from controlplane.dashboard.entity_pages import (
    EntityCreatePage,
    EntityEditPage,
    EntityListPage,
    EntityPages,
)

KNOWLEDGE_PAGES = EntityPages(
    model=KnowledgeDocument,
    noun="Document",
    plural="knowledge",
    url_name="knowledge",
    name_field="title",
    lookup_field="pk",
    object_kwarg="document",
    create=knowledge_document_create,
    update=knowledge_document_update,
)


class KnowledgeListPage(EntityListPage):
    entity = KNOWLEDGE_PAGES
    template_name = "agents/knowledge_list.html"
    filterset_class = KnowledgeDocumentFilterSet
    ordering = ("collection", "title")


class KnowledgeCreatePage(EntityCreatePage):
    entity = KNOWLEDGE_PAGES
    template_name = "agents/knowledge_form.html"
    form_class = KnowledgeDocumentForm
    success_message = "{label} added."


class KnowledgeDetailPage(EntityEditPage):
    """A document, edited in place; deleting it needs the delete permission."""

    entity = KNOWLEDGE_PAGES
    actions = ("view", "change")
    route = "detail"
    template_name = "agents/knowledge_form.html"
    form_class = KnowledgeDocumentForm
    context_object_name = "document"

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["can_delete"] = self.can("agents.delete_knowledgedocument")
        return data

    def post(self, request, *args, **kwargs):
        if request.POST.get("op") == "delete":
            self.require("agents.delete_knowledgedocument")
            document = self.object
            knowledge_document_delete(document=document)
            return self.done(f"Document “{document.title}” deleted.", to=self.url("knowledge"))
        return super().post(request, *args, **kwargs)

    def success_url(self, obj: KnowledgeDocument) -> str:
        return self.request.path
