"""Serializers of agents, their versions and the diff between two versions."""

from __future__ import annotations

from rest_framework import serializers

from agents.choices import AgentKind, ProviderKind
from agents.models import (
    Agent,
    AgentVersion,
    ProviderConnection,
)
from controlplane.api.fields import (
    SLUG,
    ManagedFields,
    MetadataUpdateSerializer,
    PublishSerializer,
    VersionNoteField,
    optional_related,
)
from controlplane.api.versions import DiffChangeSerializer


class AgentSerializer(ManagedFields, serializers.ModelSerializer):
    slug = serializers.CharField(**SLUG)
    kind = serializers.ChoiceField(choices=AgentKind.choices)
    config = serializers.JSONField(
        write_only=True,
        help_text="The kind's configuration (returned from the current version).",
    )
    note = VersionNoteField(write_only=True)
    version = optional_related("current_version.number", serializers.IntegerField)
    tools = serializers.SerializerMethodField()
    simulated = serializers.SerializerMethodField(
        help_text="True when the current version uses the offline simulated provider."
    )

    class Meta:
        model = Agent
        fields = [
            "slug",
            "name",
            "description",
            "kind",
            "tags",
            "status",
            "version",
            "config",
            "tools",
            "simulated",
            "note",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    def to_representation(self, obj):
        data = super().to_representation(obj)
        data["config"] = obj.current_version.config if obj.current_version_id else {}
        return data

    def get_tools(self, obj) -> list[str]:
        version = obj.current_version
        return [t["slug"] for t in version.tools] if version else []

    def get_simulated(self, obj) -> bool:
        version = obj.current_version
        slug = (version.config or {}).get("provider") if version else None
        if not slug:
            return False
        kinds = self.context.setdefault("_provider_kinds", {})
        if slug not in kinds:
            provider = ProviderConnection.objects.filter(slug=slug).first()
            kinds[slug] = provider.kind if provider else None
        return kinds[slug] == ProviderKind.SIMULATED


class AgentUpdateSerializer(MetadataUpdateSerializer, ManagedFields):
    versioned_field = "config"
    versioned_hint = (
        "Configuration changes publish a new version: "
        'POST .../agents/<slug>/publish/ with {"config": ..., "note": ...}.'
    )


class AgentPublishSerializer(PublishSerializer):
    config = serializers.JSONField()


class AgentRollbackSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1, help_text="The version to make current again.")


class AgentVersionSerializer(serializers.ModelSerializer):
    agent = serializers.CharField(source="agent.slug", read_only=True)
    created_by = optional_related("created_by.username")
    tools = serializers.SerializerMethodField()
    is_current = serializers.SerializerMethodField()

    class Meta:
        model = AgentVersion
        fields = [
            "agent",
            "number",
            "config",
            "tools",
            "note",
            "rolled_back_from",
            "created_by",
            "created_at",
            "is_current",
        ]
        read_only_fields = fields

    def get_tools(self, obj) -> list[str]:
        return [t["slug"] for t in obj.tools]

    def get_is_current(self, obj) -> bool:
        return obj.agent.current_version_id == obj.pk


class AgentDiffSerializer(serializers.Serializer):
    agent = serializers.CharField()
    from_version = serializers.IntegerField()
    to_version = serializers.IntegerField()
    changes = DiffChangeSerializer(many=True)
