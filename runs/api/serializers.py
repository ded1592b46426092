"""Workflow and run serializers: validate and shape; services write."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from controlplane.api.fields import (
    SLUG,
    ManagedFields,
    MetadataUpdateSerializer,
    PublishSerializer,
    VersionNoteField,
    optional_related,
)
from runs.choices import RunStatus
from runs.models import AgentMemory, Run, RunEvent, StepRun, Workflow, WorkflowVersion
from runs.pins import pinned_versions


class WorkflowSerializer(ManagedFields, serializers.ModelSerializer):
    slug = serializers.CharField(**SLUG)
    definition = serializers.JSONField(
        write_only=True, help_text="See GET /api/v1/schemas/workflow-definition/"
    )
    note = VersionNoteField(write_only=True)
    version = optional_related("current_version.number", serializers.IntegerField)

    class Meta:
        model = Workflow
        fields = [
            "slug",
            "name",
            "description",
            "tags",
            "status",
            "version",
            "definition",
            "note",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    def to_representation(self, obj):
        data = super().to_representation(obj)
        definition = obj.current_version.definition if obj.current_version_id else {}
        data["definition"] = definition
        data["input_schema"] = definition.get("input_schema", {})
        data["example_input"] = definition.get("example_input", {})
        return data


class WorkflowUpdateSerializer(MetadataUpdateSerializer, ManagedFields):
    versioned_hint = (
        "A new definition publishes a new version: POST "
        '.../workflows/<slug>/publish/ with {"definition": ..., "note": ...}.'
    )


class WorkflowPublishSerializer(PublishSerializer):
    definition = serializers.JSONField()


class WorkflowValidateSerializer(serializers.Serializer):
    definition = serializers.JSONField()


class WorkflowVersionSerializer(serializers.ModelSerializer):
    workflow = serializers.CharField(source="workflow.slug", read_only=True)
    created_by = optional_related("created_by.username")

    class Meta:
        model = WorkflowVersion
        fields = ["workflow", "number", "definition", "note", "created_by", "created_at"]
        read_only_fields = fields


class RunStartSerializer(serializers.Serializer):
    workflow = serializers.CharField(required=False, help_text="Workflow slug")
    agent = serializers.CharField(required=False, help_text="Agent slug (a single-agent run)")
    input = serializers.JSONField(required=False, default=dict)
    deadline_seconds = serializers.IntegerField(required=False, min_value=1, max_value=7 * 86400)
    max_steps = serializers.IntegerField(required=False, min_value=1, max_value=10000)

    def validate(self, attrs):
        if bool(attrs.get("workflow")) == bool(attrs.get("agent")):
            raise serializers.ValidationError(
                {"workflow": "Give exactly one of 'workflow' or 'agent' (a slug)."}
            )
        return attrs


class RunRerunSerializer(serializers.Serializer):
    input = serializers.JSONField(required=False, help_text="Omit to reuse the run's input.")
    versions = serializers.ChoiceField(
        choices=[("same", "same"), ("current", "current")],
        default="same",
        help_text="same: the agent versions the run pinned when it started (default); "
        "current: the agents' current versions.",
    )


class PinnedAgentVersionSerializer(serializers.Serializer):
    """One agent version a run pinned when it started."""

    agent = serializers.CharField(source="slug")
    version = serializers.IntegerField(source="number", allow_null=True)
    current = serializers.BooleanField(help_text="Still the agent's current version.")


class StepRunSerializer(serializers.ModelSerializer):
    step = serializers.CharField(source="step_key")
    type = serializers.CharField(source="step_type")
    agent_version = serializers.SerializerMethodField()

    class Meta:
        model = StepRun
        fields = [
            "step",
            "type",
            "status",
            "attempt",
            "max_attempts",
            "input",
            "output",
            "error",
            "route",
            "tolerated",
            "agent_version",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_agent_version(self, obj) -> int | None:
        return obj.agent_version.number if obj.agent_version_id else None


class RunEventSerializer(serializers.ModelSerializer):
    step = serializers.CharField(source="step_key")

    class Meta:
        model = RunEvent
        fields = ["seq", "type", "step", "payload", "created_at"]
        read_only_fields = fields


class RunSerializer(serializers.ModelSerializer):
    workflow = optional_related("workflow.slug")
    workflow_version = optional_related("workflow_version.number", serializers.IntegerField)
    agent = optional_related("agent.slug")
    created_by = optional_related("created_by.username")
    status = serializers.ChoiceField(choices=RunStatus.choices, read_only=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = [
            "id",
            "workflow",
            "workflow_version",
            "agent",
            "status",
            "status_reason",
            "input",
            "output",
            "context",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "step_count",
            "max_steps",
            "progress",
            "deadline",
            "rerun_of",
            "resume_count",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
            "event_seq",
        ]
        read_only_fields = fields

    def get_progress(self, obj) -> dict:
        total = len(obj.definition.get("steps", []))
        done = getattr(obj, "finished_steps", None)
        if done is None:
            done = (
                StepRun.objects.unscoped()
                .filter(run=obj, status__in=["succeeded", "skipped", "failed"])
                .count()
            )
        return {"finished_steps": done, "total_steps": total}


class RunDetailSerializer(RunSerializer):
    steps = serializers.SerializerMethodField()
    definition = serializers.JSONField(read_only=True)
    agent_versions = serializers.SerializerMethodField(
        help_text="The agent versions the run pinned when it started: its steps run these."
    )

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "definition", "agent_versions", "steps"]
        read_only_fields = fields

    @extend_schema_field(PinnedAgentVersionSerializer(many=True))
    def get_agent_versions(self, obj) -> list[dict]:
        return PinnedAgentVersionSerializer(pinned_versions(obj), many=True).data

    def get_steps(self, obj) -> list[dict]:
        steps = StepRun.objects.unscoped().filter(run=obj).select_related("agent_version")
        return StepRunSerializer(steps, many=True).data


class AgentMemorySerializer(serializers.ModelSerializer):
    """One key an agent remembers across runs."""

    value = serializers.JSONField(allow_null=True)

    class Meta:
        model = AgentMemory
        fields = ["key", "value", "updated_at"]
        read_only_fields = fields


class AgentMemoryRemovedSerializer(serializers.Serializer):
    removed = serializers.ListField(child=serializers.CharField(), help_text="The keys forgotten.")
