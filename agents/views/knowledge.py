"""Knowledge base pages: list, add, one document (edit, delete)."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect

from agents.filtersets import (
    KnowledgeDocumentFilterSet,
)
from agents.forms.knowledge import KnowledgeDocumentForm
from agents.models import (
    KnowledgeDocument,
)
from agents.services.knowledge import (
    knowledge_document_create,
    knowledge_document_delete,
    knowledge_document_update,
)
from controlplane.dashboard.pages import (
    FormPage,
    ObjectFormPage,
    TenantListPage,
)


class KnowledgeListPage(TenantListPage):
    template_name = "agents/knowledge_list.html"
    permission_required = "agents.view_knowledgedocument"
    nav_section = "knowledge"
    model = KnowledgeDocument
    filterset_class = KnowledgeDocumentFilterSet
    add_permission = "agents.add_knowledgedocument"

    def get_queryset(self):
        return KnowledgeDocument.objects.order_by("collection", "title")

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["has_any"] = data["filtered"] or KnowledgeDocument.objects.exists()
        return data


class KnowledgeCreatePage(FormPage):
    template_name = "agents/knowledge_form.html"
    permission_required = "agents.add_knowledgedocument"
    post_permission_required = "agents.add_knowledgedocument"
    nav_section = "knowledge"

    def get_form(self, data=None):
        return KnowledgeDocumentForm(data)

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["creating"] = True
        return data

    def save(self, form):
        document = knowledge_document_create(tenant=self.tenant, **form.cleaned_data)
        messages.success(self.request, f"Document “{document.title}” added.")
        return redirect(self.url("knowledge-detail", pk=document.pk))


class KnowledgeDetailPage(ObjectFormPage):
    """A document, edited in place; deleting it needs the delete permission."""

    template_name = "agents/knowledge_form.html"
    permission_required = "agents.view_knowledgedocument"
    post_permission_required = "agents.change_knowledgedocument"
    nav_section = "knowledge"
    model = KnowledgeDocument
    lookup_field = "pk"

    def get_form(self, data=None):
        document = self.object
        fields = ["collection", "title", "content", "tags"]
        return KnowledgeDocumentForm(
            data, initial={name: getattr(document, name) for name in fields}
        )

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data.update(
            creating=False,
            document=self.object,
            can_delete=self.can("agents.delete_knowledgedocument"),
        )
        return data

    def post(self, request, *args, **kwargs):
        if request.POST.get("op") == "delete":
            self.require("agents.delete_knowledgedocument")
            document = self.object
            knowledge_document_delete(document=document)
            messages.success(request, f"Document “{document.title}” deleted.")
            return redirect(self.url("knowledge"))
        return super().post(request, *args, **kwargs)

    def save(self, form):
        document = knowledge_document_update(document=self.object, **form.cleaned_data)
        messages.success(self.request, f"Document “{document.title}” saved.")
        return redirect(self.request.path)
