from django.db import models


class AgentKind(models.TextChoices):
    """How an agent answers a step."""

    LLM = "llm", "LLM (tool-calling loop)"
    HTTP = "http", "HTTP (external agent behind a webhook)"
    ROUTER = "router", "Router (rules or LLM classifier)"
    HUMAN = "human", "Human (a person answers)"


class ToolKind(models.TextChoices):
    BUILTIN = "builtin", "Built-in"
    HTTP = "http", "HTTP endpoint"
    MCP = "mcp", "MCP server tool"


class Risk(models.TextChoices):
    """What a tool can do to the world; policies match on it."""

    READ = "read", "Read"
    WRITE = "write", "Write"
    DESTRUCTIVE = "destructive", "Destructive"


class ProviderKind(models.TextChoices):
    OPENAI = "openai", "OpenAI-compatible"
    ANTHROPIC = "anthropic", "Anthropic"
    SIMULATED = "simulated", "Simulated (offline, deterministic)"


class McpTransport(models.TextChoices):
    HTTP = "http", "Streamable HTTP"
    STDIO = "stdio", "stdio command"


class TicketStatus(models.TextChoices):
    OPEN = "open", "Open"
    PENDING = "pending", "Pending"
    RESOLVED = "resolved", "Resolved"
    CLOSED = "closed", "Closed"


class TicketPriority(models.TextChoices):
    LOW = "low", "Low"
    NORMAL = "normal", "Normal"
    HIGH = "high", "High"
    URGENT = "urgent", "Urgent"


# Tools the engine itself offers an llm agent, by group, when the version's configuration
# grants the group (``"builtin_tools": ["context", "memory"]``; none by default). Their calls
# pass the policy decision point as ``call_tool`` with the tool's name and the risk below.
BUILTIN_TOOL_GROUPS: dict[str, tuple[str, ...]] = {
    "context": ("context_get", "context_set"),  # the run's shared context
    "memory": ("memory_get", "memory_set"),  # the agent's long-term memory, across runs
}
BUILTIN_TOOL_RISKS: dict[str, str] = {
    "context_get": "read",
    "context_set": "write",
    "memory_get": "read",
    "memory_set": "write",
}
