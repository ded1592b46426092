"""Approval requests and their votes as the API shows them, and a decision as it is sent."""

from __future__ import annotations

from rest_framework import serializers

from controlplane.api.fields import optional_related
from runs.approvals.models import ApprovalRequest, ApprovalVote


class ApprovalVoteSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = ApprovalVote
        fields = ["user", "approve", "comment", "created_at"]
        read_only_fields = fields


class ApprovalSerializer(serializers.ModelSerializer):
    run = serializers.IntegerField(source="run_id", read_only=True)
    step = optional_related("step_run.step_key")
    decided_by = optional_related("decided_by.username")
    policy = optional_related("policy.slug")
    votes = ApprovalVoteSerializer(many=True, read_only=True)
    approve_votes = serializers.SerializerMethodField(
        help_text="Distinct people who approved so far (decided at required_approvals)."
    )

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
            "required_approvals",
            "approve_votes",
            "votes",
            "policy",
            "rule",
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

    def get_approve_votes(self, obj) -> int:
        return sum(1 for vote in obj.votes.all() if vote.approve)


class ApprovalDecisionSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["approve", "deny"])
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    response = serializers.JSONField(
        required=False, help_text="A human agent's answer (validated against response_schema)."
    )
