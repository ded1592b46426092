"""Registry API: agents (+ versions, diff, publish, rollback), tools, grants, providers,
MCP servers, secrets, knowledge documents and tickets. Views validate and call services."""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from agents.api.serializers.agents import (
    AgentDiffSerializer,
    AgentPublishSerializer,
    AgentRollbackSerializer,
    AgentSerializer,
    AgentUpdateSerializer,
    AgentVersionSerializer,
)
from agents.api.serializers.knowledge import KnowledgeDocumentSerializer
from agents.api.serializers.mcp_servers import McpServerSerializer
from agents.api.serializers.providers import ConnectionCheckSerializer, ProviderSerializer
from agents.api.serializers.secrets import SecretSerializer, SecretUpdateSerializer
from agents.api.serializers.tickets import TicketSerializer
from agents.api.serializers.tools import ToolGrantSerializer, ToolSerializer
from agents.filtersets import (
    AgentFilterSet,
    KnowledgeDocumentFilterSet,
    McpServerFilterSet,
    ProviderFilterSet,
    SecretFilterSet,
    TicketFilterSet,
    ToolFilterSet,
    ToolGrantFilterSet,
)
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
from agents.providers.base import get_adapter
from agents.selectors import version_diff
from agents.services.agents import agent_create, agent_publish, agent_rollback, agent_update
from agents.services.knowledge import (
    knowledge_document_create,
    knowledge_document_delete,
    knowledge_document_update,
)
from agents.services.mcp_servers import mcp_server_create, mcp_server_update
from agents.services.providers import provider_create, provider_record_test, provider_update
from agents.services.secrets import secret_create, secret_delete, secret_update
from agents.services.tools import tool_create, tool_grant_create, tool_grant_delete, tool_update
from agents.tools.base import ToolError
from controlplane.api.base import (
    WITHOUT_PUT,
    ServiceCreateMixin,
    ServiceWritesMixin,
    SlugLookupMixin,
    TenantListCreateDestroyViewSet,
    TenantReadOnlyViewSet,
    TenantViewSet,
)
from controlplane.api.object_permissions import ObjectPermissionsMixin
from controlplane.api.versions import VersionDiffMixin, version_diff_schema

DISABLE_NOT_DELETE = 'Registry objects are disabled, not deleted: PATCH {"status": "disabled"}.'


class SlugLookup(SlugLookupMixin):
    """Registry objects: addressed by slug; disabled (PATCH status), never deleted.

    DELETE is not routed (nor documented): runs pin versions and audit rows name these
    objects. Its 405 says what to do instead.
    """

    http_method_names = ["get", "post", "put", "patch", "head", "options"]
    method_not_allowed_hints = {"DELETE": DISABLE_NOT_DELETE}


@extend_schema_view(
    **version_diff_schema(
        noun="agent",
        version_serializer=AgentVersionSerializer,
        diff_serializer=AgentDiffSerializer,
        to_default="the current version",
        diff_description=(
            "What changed between two versions (configuration leaves and pinned tools)."
        ),
    )
)
class AgentViewSet(
    SlugLookup, VersionDiffMixin, ObjectPermissionsMixin, ServiceCreateMixin, TenantViewSet
):
    """Agents and their immutable versions. PATCH edits metadata; publish makes a new version."""

    model = Agent
    http_method_names = ["get", "post", "patch", "head", "options"]  # no PUT: PATCH edits
    method_not_allowed_hints = {
        "DELETE": DISABLE_NOT_DELETE,
        "PUT": "Edit an agent with PATCH; POST .../publish/ makes a new version.",
    }
    serializer_class = AgentSerializer
    filterset_class = AgentFilterSet
    allow_object_grants = True
    action_permissions = {
        "versions": "agents.view_agent",
        "version": "agents.view_agent",
        "diff": "agents.view_agent",
        "publish": "agents.change_agent",
        "rollback": "agents.change_agent",
        "permissions": "agents.add_agent",
    }
    version_model = AgentVersion
    version_serializer_class = AgentVersionSerializer
    create_service = agent_create
    # status is an edit's: a new agent starts active
    create_fields = ("slug", "name", "kind", "config", "description", "tags", "note")
    records_creator = True

    def refine_queryset(self, queryset):
        return queryset.select_related("current_version")

    def diff_default_to(self, agent: Agent) -> int:
        return agent.current_version.number

    def diff_changes(self, older: AgentVersion, newer: AgentVersion) -> list[dict]:
        return version_diff(older, newer)

    @extend_schema(request=AgentUpdateSerializer, responses=AgentSerializer)
    def partial_update(self, request, *args, **kwargs):
        agent = self.get_object()
        data = self.validated(AgentUpdateSerializer)
        agent = agent_update(agent=agent, **data)
        return Response(AgentSerializer(agent, context=self.get_serializer_context()).data)

    @extend_schema(responses=AgentVersionSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)
    def versions(self, request, *args, **kwargs):
        """Every version of the agent, newest first."""
        agent = self.get_object()
        versions = self.version_queryset(agent).order_by("-number")
        return Response(AgentVersionSerializer(versions, many=True).data)

    @extend_schema(request=AgentPublishSerializer, responses={201: AgentVersionSerializer})
    @action(detail=True, methods=["post"])
    def publish(self, request, *args, **kwargs):
        """Publish a new immutable version and make it current."""
        agent = self.get_object()
        data = self.validated(AgentPublishSerializer)
        version = agent_publish(agent=agent, created_by=request.user, **data)
        return Response(AgentVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=AgentRollbackSerializer, responses={201: AgentVersionSerializer})
    @action(detail=True, methods=["post"])
    def rollback(self, request, *args, **kwargs):
        """Make an old version current again (as a new version copying it)."""
        agent = self.get_object()
        data = self.validated(AgentRollbackSerializer)
        version = agent_rollback(agent=agent, number=data["version"], created_by=request.user)
        return Response(AgentVersionSerializer(version).data, status=status.HTTP_201_CREATED)


class ToolViewSet(SlugLookup, ServiceWritesMixin, ObjectPermissionsMixin, TenantViewSet):
    """Tools agents may call: built-in, HTTP or discovered from an MCP server."""

    model = Tool
    serializer_class = ToolSerializer
    filterset_class = ToolFilterSet
    allow_object_grants = True
    action_permissions = {"permissions": "agents.add_tool"}
    create_service = tool_create
    update_service = tool_update
    instance_kwarg = "tool"

    def refine_queryset(self, queryset):
        return queryset.select_related("mcp_server")


class ToolGrantViewSet(TenantListCreateDestroyViewSet):
    """Which agents (by slug) or agent tags may use which tools."""

    model = ToolGrant
    serializer_class = ToolGrantSerializer
    filterset_class = ToolGrantFilterSet
    ordering = "id"

    def refine_queryset(self, queryset):
        return queryset.select_related("tool", "agent")

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = tool_grant_create(
            tool=data["tool"], agent=data.get("agent"), agent_tag=data.get("agent_tag", "")
        )

    def perform_destroy(self, instance):
        tool_grant_delete(grant=instance)


class ProviderViewSet(SlugLookup, ServiceWritesMixin, TenantViewSet):
    """Model providers: OpenAI-compatible, Anthropic or the offline simulator.

    An edit without ``api_key`` keeps the stored key.
    """

    model = ProviderConnection
    serializer_class = ProviderSerializer
    filterset_class = ProviderFilterSet
    action_permissions = {"test": "agents.change_providerconnection"}
    create_service = provider_create
    update_service = provider_update
    instance_kwarg = "provider"

    @extend_schema(request=None, responses=ConnectionCheckSerializer)
    @action(detail=True, methods=["post"])
    def test(self, request, *args, **kwargs):
        """Make one cheap call to the provider and report the outcome in plain words."""
        provider = self.get_object()
        check = get_adapter(provider).test_connection()
        provider_record_test(
            provider=provider, ok=check.ok, message=check.message, latency_ms=check.latency_ms
        )
        return Response(
            {
                "ok": check.ok,
                "message": check.message,
                "latency_ms": round(check.latency_ms, 1),
                "models": check.models,
            }
        )


class McpServerViewSet(SlugLookup, ServiceWritesMixin, TenantViewSet):
    """MCP servers (streamable HTTP or stdio); discover registers their tools.

    An edit without ``secret_headers`` or ``secret_env`` keeps the stored ones.
    """

    model = McpServer
    serializer_class = McpServerSerializer
    filterset_class = McpServerFilterSet
    action_permissions = {"discover": "agents.change_mcpserver"}
    create_service = mcp_server_create
    update_service = mcp_server_update
    instance_kwarg = "server"

    @extend_schema(request=None, responses=ToolSerializer(many=True))
    @action(detail=True, methods=["post"])
    def discover(self, request, *args, **kwargs):
        """List the server's tools through the MCP client and register each as a Tool."""
        # imported here: the MCP client library is heavy, and only discovery needs it
        from agents.tools.mcp_services import mcp_server_discover

        server = self.get_object()
        try:
            tools = mcp_server_discover(server=server)
        except ToolError as exc:
            raise serializers.ValidationError({"non_field_errors": [exc.message]}) from None
        return Response(ToolSerializer(tools, many=True).data)


class SecretViewSet(ServiceCreateMixin, TenantViewSet):
    """Named secrets (write-only values) referenced by tools and http agents."""

    model = Secret
    serializer_class = SecretSerializer
    filterset_class = SecretFilterSet
    lookup_field = "name"
    lookup_value_regex = r"[a-z0-9-]+"
    ordering = "name"
    http_method_names = WITHOUT_PUT
    create_service = secret_create

    @extend_schema(request=SecretUpdateSerializer, responses=SecretSerializer)
    def partial_update(self, request, *args, **kwargs):
        secret = self.get_object()
        data = self.validated(SecretUpdateSerializer)
        secret = secret_update(secret=secret, **data)
        return Response(SecretSerializer(secret).data)

    def perform_destroy(self, instance):
        secret_delete(secret=instance)


class KnowledgeDocumentViewSet(ServiceWritesMixin, TenantViewSet):
    """Documents of the tenant's knowledge base, searched by the kb_search tool."""

    model = KnowledgeDocument
    serializer_class = KnowledgeDocumentSerializer
    filterset_class = KnowledgeDocumentFilterSet
    ordering = "id"
    http_method_names = WITHOUT_PUT
    create_service = knowledge_document_create
    update_service = knowledge_document_update
    instance_kwarg = "document"

    def perform_destroy(self, instance):
        with transaction.atomic():
            knowledge_document_delete(document=instance)


class TicketViewSet(TenantReadOnlyViewSet):
    """Tickets written by the ticket tools during runs (read-only here)."""

    model = Ticket
    serializer_class = TicketSerializer
    filterset_class = TicketFilterSet
    lookup_field = "number"
    lookup_value_regex = r"\d+"
    ordering = "-number"
