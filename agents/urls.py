"""Dashboard URLs of the registry, included under ``t/<slug:tenant>/`` (dashboard namespace)."""

from django.urls import path

from agents import views

urlpatterns = [
    path("agents/", views.AgentListPage.as_view(), name="agents"),
    path("agents/new/", views.AgentCreatePage.as_view(), name="agent-create"),
    path("agents/<slug:slug>/", views.AgentDetailPage.as_view(), name="agent-detail"),
    path("agents/<slug:slug>/edit/", views.AgentEditPage.as_view(), name="agent-edit"),
    path("tools/", views.ToolListPage.as_view(), name="tools"),
    path("tools/new/", views.ToolCreatePage.as_view(), name="tool-create"),
    path("tools/<slug:slug>/", views.ToolDetailPage.as_view(), name="tool-detail"),
    path("tools/<slug:slug>/edit/", views.ToolEditPage.as_view(), name="tool-edit"),
    path("providers/", views.ProviderListPage.as_view(), name="providers"),
    path("providers/new/", views.ProviderCreatePage.as_view(), name="provider-create"),
    path("providers/<slug:slug>/", views.ProviderDetailPage.as_view(), name="provider-detail"),
    path("providers/<slug:slug>/edit/", views.ProviderEditPage.as_view(), name="provider-edit"),
    path("mcp-servers/", views.McpServerListPage.as_view(), name="mcp-servers"),
    path("mcp-servers/new/", views.McpServerCreatePage.as_view(), name="mcp-server-create"),
    path(
        "mcp-servers/<slug:slug>/",
        views.McpServerDetailPage.as_view(),
        name="mcp-server-detail",
    ),
    path(
        "mcp-servers/<slug:slug>/edit/",
        views.McpServerEditPage.as_view(),
        name="mcp-server-edit",
    ),
    path("secrets/", views.SecretListPage.as_view(), name="secrets"),
    path("secrets/<slug:name>/", views.SecretDetailPage.as_view(), name="secret-detail"),
    path("knowledge/", views.KnowledgeListPage.as_view(), name="knowledge"),
    path("knowledge/new/", views.KnowledgeCreatePage.as_view(), name="knowledge-create"),
    path("knowledge/<int:pk>/", views.KnowledgeDetailPage.as_view(), name="knowledge-detail"),
]
