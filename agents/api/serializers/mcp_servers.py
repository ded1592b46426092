"""Serializers of MCP servers: secret headers and environment are write-only."""

from __future__ import annotations

from rest_framework import serializers

from agents.api.serializers.fields import SecretMapField
from agents.choices import McpTransport
from agents.models import (
    McpServer,
    Tool,
)
from controlplane.api.fields import SLUG, TagsField


class McpServerSerializer(serializers.ModelSerializer):
    slug = serializers.CharField(**SLUG)
    transport = serializers.ChoiceField(
        choices=McpTransport.choices,
        required=False,
        help_text='"http": streamable HTTP at `url`; "stdio": `command` + `args` run on the '
        "control plane's host (only executables listed in MCP_STDIO_COMMANDS). "
        "Omitted: http when `url` is given, stdio when `command` is.",
        error_messages={
            "invalid_choice": '"{input}" is not a transport: use "http" (streamable HTTP, '
            'with url) or "stdio" (a command on this host, with command and args).'
        },
    )
    args = serializers.ListField(child=serializers.CharField(max_length=1000), required=False)
    secret_headers = SecretMapField(
        write_only=True, required=False, help_text="Headers with secret values (write-only)."
    )
    secret_env = SecretMapField(
        write_only=True, required=False, help_text="Environment for a stdio server (write-only)."
    )
    secret_header_names = serializers.SerializerMethodField()
    secret_env_names = serializers.SerializerMethodField()
    tools = serializers.SerializerMethodField()
    tags = TagsField(required=False)

    class Meta:
        model = McpServer
        fields = [
            "slug",
            "name",
            "description",
            "transport",
            "url",
            "command",
            "args",
            "secret_headers",
            "secret_header_names",
            "secret_env",
            "secret_env_names",
            "timeout_seconds",
            "tags",
            "status",
            "tools",
            "last_discovered_at",
            "last_error",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["last_discovered_at", "last_error", "created_at", "updated_at"]

    def validate(self, attrs):
        if "transport" not in attrs and self.instance is None:
            if attrs.get("url") and not attrs.get("command"):
                attrs["transport"] = McpTransport.HTTP
            elif attrs.get("command") and not attrs.get("url"):
                attrs["transport"] = McpTransport.STDIO
            else:
                raise serializers.ValidationError(
                    {
                        "transport": 'Give the transport: "http" (streamable HTTP, with url) '
                        'or "stdio" (a command on this host, with command and args).'
                    }
                )
        return attrs

    def get_secret_header_names(self, obj) -> list[str]:
        return sorted(obj.secret_headers or {})

    def get_secret_env_names(self, obj) -> list[str]:
        return sorted(obj.secret_env or {})

    def get_tools(self, obj) -> list[str]:
        return list(
            Tool.objects.filter(mcp_server=obj).order_by("slug").values_list("slug", flat=True)
        )
