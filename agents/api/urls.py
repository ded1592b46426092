from agents.api import views


def register(router) -> None:
    """Add the registry's resources to the tenant router."""
    router.register("agents", views.AgentViewSet, basename="agent")
    router.register("tools", views.ToolViewSet, basename="tool")
    router.register("tool-grants", views.ToolGrantViewSet, basename="tool-grant")
    router.register("providers", views.ProviderViewSet, basename="provider")
    router.register("mcp-servers", views.McpServerViewSet, basename="mcp-server")
    router.register("secrets", views.SecretViewSet, basename="secret")
    router.register(
        "knowledge-documents", views.KnowledgeDocumentViewSet, basename="knowledge-document"
    )
    router.register("tickets", views.TicketViewSet, basename="ticket")
