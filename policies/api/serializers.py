from rest_framework import serializers

from policies.models import ApprovalRequest


class ApprovalSerializer(serializers.ModelSerializer):
    run = serializers.IntegerField(source="run_id", read_only=True)
    step = serializers.CharField(source="step_run.step_key", read_only=True, default=None)
    decided_by = serializers.CharField(source="decided_by.username", read_only=True, default=None)

    class Meta:
        model = ApprovalRequest
        fields = [
            "id",
            "run",
            "step",
            "kind",
            "title",
            "details",
            "response_schema",
            "required_role",
            "status",
            "response",
            "comment",
            "decided_by",
            "decided_at",
            "expires_at",
            "on_timeout",
            "created_at",
        ]
        read_only_fields = fields


class ApprovalDecisionSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["approve", "deny"])
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    response = serializers.JSONField(
        required=False, help_text="A human agent's answer (validated against response_schema)."
    )
