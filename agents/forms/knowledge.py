"""Forms of the knowledge base pages."""

from __future__ import annotations

from django import forms

from controlplane.dashboard.forms import (
    DashboardForm,
    slug_field,
    tags_field,
)


class KnowledgeDocumentForm(DashboardForm):
    collection = slug_field(
        initial="default", help_text="Groups documents; kb_search can search one collection."
    )
    title = forms.CharField(max_length=300)
    content = forms.CharField(widget=forms.Textarea(attrs={"rows": 12}))
    tags = tags_field()
