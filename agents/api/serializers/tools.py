"""Serializers of tools and tool grants."""

from __future__ import annotations

from rest_framework import serializers

from agents.api.serializers.fields import SecretMapField
from agents.choices import Risk, ToolKind
from agents.models import (
    Agent,
    Tool,
    ToolGrant,
)
from agents.tools.builtin import effective_risk
from controlplane.api.fields import SLUG, TagsField


class ToolSerializer(serializers.ModelSerializer):
    slug = serializers.CharField(**SLUG)
    kind = serializers.ChoiceField(choices=ToolKind.choices)
    risk = serializers.ChoiceField(choices=Risk.choices, required=False)
    secret_headers = SecretMapField(
        write_only=True, required=False, help_text="Headers with secret values (write-only)."
    )
    secret_header_names = serializers.SerializerMethodField()
    mcp_server = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    allowed_hosts = serializers.ListField(
        child=serializers.CharField(max_length=255), required=False
    )
    input_schema = serializers.JSONField(required=False)
    output_schema = serializers.JSONField(required=False)
    headers = serializers.JSONField(required=False)
    config = serializers.JSONField(required=False)
    tags = TagsField(required=False)

    class Meta:
        model = Tool
        fields = [
            "slug",
            "name",
            "description",
            "kind",
            "builtin",
            "url",
            "method",
            "headers",
            "secret_headers",
            "secret_header_names",
            "allowed_hosts",
            "mcp_server",
            "mcp_tool_name",
            "input_schema",
            "output_schema",
            "risk",
            "timeout_seconds",
            "config",
            "tags",
            "status",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["mcp_tool_name", "created_at", "updated_at"]

    def get_secret_header_names(self, obj) -> list[str]:
        return sorted(obj.secret_headers or {})

    def to_representation(self, instance):
        data = super().to_representation(instance)
        # the risk policies apply (a row stored below its built-in's floor shows the floor)
        data["risk"] = effective_risk(
            kind=instance.kind, builtin=instance.builtin, risk=instance.risk
        )
        return data


class ToolGrantSerializer(serializers.ModelSerializer):
    tool = serializers.SlugRelatedField(slug_field="slug", queryset=Tool.objects.none())
    agent = serializers.SlugRelatedField(
        slug_field="slug", queryset=Agent.objects.none(), required=False, allow_null=True
    )
    agent_tag = serializers.CharField(required=False, allow_blank=True, max_length=50)

    class Meta:
        model = ToolGrant
        fields = ["id", "tool", "agent", "agent_tag", "created_at"]
        read_only_fields = ["id", "created_at"]
        validators = []  # the service makes a repeated grant idempotent

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        tenant = self.context.get("tenant")
        if tenant is not None:
            # related fields resolve only inside the request's tenant
            self.fields["tool"].queryset = Tool.objects.for_tenant(tenant)
            self.fields["agent"].queryset = Agent.objects.for_tenant(tenant)

    def validate(self, attrs):
        if bool(attrs.get("agent")) == bool(attrs.get("agent_tag")):
            raise serializers.ValidationError(
                {"agent": "Name exactly one of 'agent' (a slug) or 'agent_tag'."}
            )
        return attrs
