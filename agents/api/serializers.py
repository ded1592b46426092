"""Registry serializers. They validate and shape data; services write. Secrets are write-only."""

from __future__ import annotations

from rest_framework import serializers

from agents.choices import AgentKind, McpTransport, ProviderKind, Risk, ToolKind
from agents.models import (
    Agent,
    AgentVersion,
    KnowledgeDocument,
    McpServer,
    ProviderConnection,
    Secret,
    Ticket,
    Tool,
    ToolGrant,
)
from agents.tools.builtin import effective_risk
from controlplane.choices import Status
from controlplane.tenancy.models import slug_validator

SLUG = {"max_length": 50, "validators": [slug_validator]}


class TagsField(serializers.ListField):
    child = serializers.CharField(max_length=50)


class SecretMapField(serializers.DictField):
    """Header or variable name -> secret value; accepted on write, never returned."""

    child = serializers.CharField(allow_blank=False, max_length=10000)


# Secrets -----------------------------------------------------------------------------------


class SecretSerializer(serializers.ModelSerializer):
    value = serializers.CharField(
        write_only=True,
        max_length=20000,
        trim_whitespace=False,
        help_text="The secret itself; stored encrypted, never returned.",
    )

    class Meta:
        model = Secret
        fields = ["name", "description", "value", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]
        extra_kwargs = {"name": {"validators": [slug_validator]}}


class SecretUpdateSerializer(serializers.Serializer):
    value = serializers.CharField(required=False, max_length=20000, trim_whitespace=False)
    description = serializers.CharField(required=False, allow_blank=True)


# Providers ---------------------------------------------------------------------------------


class ProviderSerializer(serializers.ModelSerializer):
    slug = serializers.CharField(**SLUG)
    kind = serializers.ChoiceField(choices=ProviderKind.choices)
    api_key = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=5000,
        help_text='Write-only. Omit on update to keep the stored key; send "" to clear it.',
    )
    has_api_key = serializers.SerializerMethodField()
    simulated = serializers.SerializerMethodField(
        help_text="True for the offline simulator: its answers are not from a real model."
    )
    models = serializers.JSONField(
        required=False,
        help_text='[{"name": "gpt-4o-mini", "input_per_mtok": 0.15, "output_per_mtok": 0.6}] '
        "(USD per million tokens) or a list of model names.",
    )
    tags = TagsField(required=False)

    class Meta:
        model = ProviderConnection
        fields = [
            "slug",
            "name",
            "description",
            "kind",
            "simulated",
            "base_url",
            "api_key",
            "has_api_key",
            "api_key_env",
            "models",
            "timeout_seconds",
            "tags",
            "status",
            "last_test_at",
            "last_test_ok",
            "last_test_message",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "last_test_at",
            "last_test_ok",
            "last_test_message",
            "created_at",
            "updated_at",
        ]

    def get_has_api_key(self, obj) -> bool:
        return bool(obj.api_key)

    def get_simulated(self, obj) -> bool:
        return obj.kind == ProviderKind.SIMULATED


class ConnectionCheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    message = serializers.CharField()
    latency_ms = serializers.FloatField()
    models = serializers.ListField(child=serializers.CharField())


# MCP servers -------------------------------------------------------------------------------


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


# Tools -------------------------------------------------------------------------------------


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


# Agents ------------------------------------------------------------------------------------


class AgentSerializer(serializers.ModelSerializer):
    slug = serializers.CharField(**SLUG)
    kind = serializers.ChoiceField(choices=AgentKind.choices)
    config = serializers.JSONField(
        write_only=True,
        help_text="The kind's configuration (returned from the current version).",
    )
    note = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=300)
    version = serializers.IntegerField(
        source="current_version.number", read_only=True, default=None, allow_null=True
    )
    tools = serializers.SerializerMethodField()
    simulated = serializers.SerializerMethodField(
        help_text="True when the current version uses the offline simulated provider."
    )
    tags = TagsField(required=False)
    status = serializers.ChoiceField(choices=Status.choices, required=False)

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


class AgentUpdateSerializer(serializers.Serializer):
    slug = serializers.CharField(required=False, **SLUG)
    name = serializers.CharField(required=False, max_length=200)
    description = serializers.CharField(required=False, allow_blank=True)
    tags = TagsField(required=False)
    status = serializers.ChoiceField(choices=Status.choices, required=False)

    def validate(self, attrs):
        extra = set(self.initial_data) - set(self.fields)
        if "config" in extra:
            raise serializers.ValidationError(
                {
                    "config": "Configuration changes publish a new version: "
                    'POST .../agents/<slug>/publish/ with {"config": ..., "note": ...}.'
                }
            )
        return attrs


class AgentPublishSerializer(serializers.Serializer):
    config = serializers.JSONField()
    note = serializers.CharField(required=False, allow_blank=True, max_length=300)


class AgentRollbackSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1, help_text="The version to make current again.")


class AgentVersionSerializer(serializers.ModelSerializer):
    agent = serializers.CharField(source="agent.slug", read_only=True)
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, default=None, allow_null=True
    )
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


class DiffChangeSerializer(serializers.Serializer):
    path = serializers.CharField()
    change = serializers.ChoiceField(choices=["added", "removed", "changed"])
    before = serializers.JSONField(allow_null=True)
    after = serializers.JSONField(allow_null=True)


class AgentDiffSerializer(serializers.Serializer):
    agent = serializers.CharField()
    from_version = serializers.IntegerField()
    to_version = serializers.IntegerField()
    changes = DiffChangeSerializer(many=True)


# Knowledge base and tickets ----------------------------------------------------------------


class KnowledgeDocumentSerializer(serializers.ModelSerializer):
    collection = serializers.CharField(required=False, **SLUG)
    tags = TagsField(required=False)

    class Meta:
        model = KnowledgeDocument
        fields = ["id", "collection", "title", "content", "tags", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]


class TicketSerializer(serializers.ModelSerializer):
    class Meta:
        model = Ticket
        fields = [
            "number",
            "title",
            "description",
            "status",
            "priority",
            "customer",
            "data",
            "idempotency_key",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
