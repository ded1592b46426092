"""Serializers of knowledge documents."""

from __future__ import annotations

from rest_framework import serializers

from agents.models import KnowledgeDocument
from controlplane.api.fields import SLUG, TagsField


class KnowledgeDocumentSerializer(serializers.ModelSerializer):
    collection = serializers.CharField(required=False, **SLUG)
    tags = TagsField(required=False)

    class Meta:
        model = KnowledgeDocument
        fields = ["id", "collection", "title", "content", "tags", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
