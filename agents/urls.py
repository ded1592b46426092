"""Dashboard URLs of the registry, included under ``t/<slug:tenant>/`` (dashboard namespace)."""

from django.urls import path

from agents.views import agents, knowledge, mcp_servers, providers, secrets, tools

urlpatterns = [
    path("agents/", agents.AgentListPage.as_view(), name="agents"),
    path("agents/new/", agents.AgentCreatePage.as_view(), name="agent-create"),
    path("agents/<slug:slug>/", agents.AgentDetailPage.as_view(), name="agent-detail"),
    path("agents/<slug:slug>/edit/", agents.AgentEditPage.as_view(), name="agent-edit"),
    path("tools/", tools.ToolListPage.as_view(), name="tools"),
    path("tools/new/", tools.ToolCreatePage.as_view(), name="tool-create"),
    path("tools/<slug:slug>/", tools.ToolDetailPage.as_view(), name="tool-detail"),
    path("tools/<slug:slug>/edit/", tools.ToolEditPage.as_view(), name="tool-edit"),
    path("providers/", providers.ProviderListPage.as_view(), name="providers"),
    path("providers/new/", providers.ProviderCreatePage.as_view(), name="provider-create"),
    path("providers/<slug:slug>/", providers.ProviderDetailPage.as_view(), name="provider-detail"),
    path("providers/<slug:slug>/edit/", providers.ProviderEditPage.as_view(), name="provider-edit"),
    path("mcp-servers/", mcp_servers.McpServerListPage.as_view(), name="mcp-servers"),
    path("mcp-servers/new/", mcp_servers.McpServerCreatePage.as_view(), name="mcp-server-create"),
    path(
        "mcp-servers/<slug:slug>/",
        mcp_servers.McpServerDetailPage.as_view(),
        name="mcp-server-detail",
    ),
    path(
        "mcp-servers/<slug:slug>/edit/",
        mcp_servers.McpServerEditPage.as_view(),
        name="mcp-server-edit",
    ),
    path("secrets/", secrets.SecretListPage.as_view(), name="secrets"),
    path("secrets/<slug:name>/", secrets.SecretDetailPage.as_view(), name="secret-detail"),
    path("knowledge/", knowledge.KnowledgeListPage.as_view(), name="knowledge"),
    path("knowledge/new/", knowledge.KnowledgeCreatePage.as_view(), name="knowledge-create"),
    path("knowledge/<int:pk>/", knowledge.KnowledgeDetailPage.as_view(), name="knowledge-detail"),
]
