"""Dashboard URLs of the registry, included under ``t/<slug:tenant>/`` (dashboard namespace)."""

from agents.views import agents, knowledge, mcp_servers, providers, secrets, tools
from controlplane.dashboard.entity_pages import entity_urls

urlpatterns = entity_urls(
    agents.AgentListPage,
    agents.AgentCreatePage,
    agents.AgentDetailPage,
    agents.AgentEditPage,
    tools.ToolListPage,
    tools.ToolCreatePage,
    tools.ToolDetailPage,
    tools.ToolEditPage,
    providers.ProviderListPage,
    providers.ProviderCreatePage,
    providers.ProviderDetailPage,
    providers.ProviderEditPage,
    mcp_servers.McpServerListPage,
    mcp_servers.McpServerCreatePage,
    mcp_servers.McpServerDetailPage,
    mcp_servers.McpServerEditPage,
    secrets.SecretListPage,
    secrets.SecretDetailPage,
    knowledge.KnowledgeListPage,
    knowledge.KnowledgeCreatePage,
    knowledge.KnowledgeDetailPage,
)
