"""Policies, their versions and stored decisions: validate and shape; services write."""

from __future__ import annotations

from rest_framework import serializers

from controlplane.api.fields import (
    SLUG,
    MetadataUpdateSerializer,
    VersionNoteField,
    optional_related,
)
from controlplane.api.versions import DiffChangeSerializer
from policies.choices import PolicyMode
from policies.models import Policy, PolicyDecision, PolicyVersion

DEFINITION_HELP = "See GET /api/v1/schemas/policy-definition/"
SIMULATION_MAX = 5000

# Policies -------------------------------------------------------------------------------------


class PolicySerializer(serializers.ModelSerializer):
    """A policy as listed: which version is applied and whether a newer draft waits."""

    active_version = optional_related("active_version.number", serializers.IntegerField)
    latest_version = serializers.IntegerField(read_only=True, default=None, allow_null=True)
    versions_count = serializers.IntegerField(read_only=True, default=0)
    has_draft = serializers.SerializerMethodField(
        help_text="A version newer than the applied one exists (activate it to apply it)."
    )

    class Meta:
        model = Policy
        fields = [
            "slug",
            "name",
            "description",
            "mode",
            "is_default",
            "active_version",
            "latest_version",
            "versions_count",
            "has_draft",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_has_draft(self, obj) -> bool:
        latest = getattr(obj, "latest_version", None)
        active = obj.active_version.number if obj.active_version_id else 0
        return latest is not None and latest > active


class PolicyDetailSerializer(PolicySerializer):
    """A policy with the definition of its applied version (null: nothing applied yet)."""

    definition = serializers.SerializerMethodField()

    class Meta(PolicySerializer.Meta):
        fields = [*PolicySerializer.Meta.fields, "definition"]
        read_only_fields = fields

    def get_definition(self, obj) -> dict | None:
        return obj.active_version.definition if obj.active_version_id else None


class PolicyCreateSerializer(serializers.Serializer):
    slug = serializers.CharField(**SLUG)
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    mode = serializers.ChoiceField(choices=PolicyMode.choices, default=PolicyMode.ENFORCE)
    definition = serializers.JSONField(help_text=DEFINITION_HELP)
    note = VersionNoteField(default="")
    activate = serializers.BooleanField(
        default=True, help_text="Apply the first version at once; false keeps it a draft."
    )


class PolicyUpdateSerializer(MetadataUpdateSerializer):
    versioned_hint = (
        "Rules change through versions: POST .../policies/<slug>/versions/ "
        'with {"definition": ..., "note": ...}, then activate it.'
    )

    mode = serializers.ChoiceField(choices=PolicyMode.choices, required=False)


class PolicyVersionSerializer(serializers.ModelSerializer):
    policy = serializers.CharField(source="policy.slug", read_only=True)
    created_by = optional_related("created_by.username")
    state = serializers.SerializerMethodField(
        help_text="active (applied), draft (never applied) or previous (applied before)."
    )

    class Meta:
        model = PolicyVersion
        fields = [
            "policy",
            "number",
            "state",
            "definition",
            "note",
            "created_by",
            "created_at",
            "activated_at",
        ]
        read_only_fields = fields

    def get_state(self, obj) -> str:
        if obj.policy.active_version_id == obj.pk:
            return "active"
        return "draft" if obj.activated_at is None else "previous"


class PolicyVersionCreateSerializer(serializers.Serializer):
    definition = serializers.JSONField(help_text=DEFINITION_HELP)
    note = VersionNoteField(default="")


class PolicyActivateSerializer(serializers.Serializer):
    version = serializers.IntegerField(
        min_value=1, help_text="The version to apply: a newer draft, or an older one to roll back."
    )


class PolicyModeSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=PolicyMode.choices)


class PolicySimulateSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1, help_text="The version to replay.")
    limit = serializers.IntegerField(
        min_value=1,
        max_value=SIMULATION_MAX,
        default=200,
        help_text="Replay the tenant's last this many decisions.",
    )
    mode = serializers.ChoiceField(
        choices=PolicyMode.choices,
        required=False,
        help_text="The mode the version would run in (default: the policy's current mode).",
    )


class SimulationChangeSerializer(serializers.Serializer):
    decision = serializers.IntegerField()
    run = serializers.IntegerField(allow_null=True)
    step = serializers.CharField()
    action = serializers.CharField()
    agent = serializers.CharField()
    tool = serializers.CharField()
    model = serializers.CharField()
    arguments = serializers.JSONField(allow_null=True)
    recorded = serializers.CharField()
    before = serializers.CharField()
    after = serializers.CharField()
    rule = serializers.CharField(allow_null=True)
    reason = serializers.CharField()
    at = serializers.DateTimeField()


class SimulationResultSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    replayed = serializers.IntegerField()
    changed = serializers.IntegerField()
    transitions = serializers.DictField(
        child=serializers.IntegerField(), help_text='Counts by "before->after" effect.'
    )
    changes = SimulationChangeSerializer(many=True)


class PolicyDiffSerializer(serializers.Serializer):
    policy = serializers.CharField()
    from_version = serializers.IntegerField()
    to_version = serializers.IntegerField()
    changes = DiffChangeSerializer(many=True)


class PolicyGrantSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    permission = serializers.ChoiceField(
        choices=["approve"],
        default="approve",
        help_text="approve: may decide the approvals this policy asks for, whatever their role.",
    )


# Decisions ------------------------------------------------------------------------------------


class PolicyDecisionSerializer(serializers.ModelSerializer):
    run = optional_related("run_id", serializers.IntegerField)
    step = serializers.CharField(source="step_key", read_only=True)
    policy = optional_related("policy.slug")
    policy_version = optional_related("policy_version.number", serializers.IntegerField)
    would_policy = serializers.CharField(
        source="would_policy.slug",
        read_only=True,
        default=None,
        allow_null=True,
        help_text="The log-only policy whose rule gave would_effect.",
    )

    class Meta:
        model = PolicyDecision
        fields = [
            "id",
            "run",
            "step",
            "action",
            "agent",
            "tool",
            "model",
            "effect",
            "would_effect",
            "would_policy",
            "would_rule",
            "would_reason",
            "policy",
            "policy_version",
            "rule",
            "reason",
            "inputs_hash",
            "inputs",
            "created_at",
        ]
        read_only_fields = fields
