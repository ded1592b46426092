from django.db import models


class Status(models.TextChoices):
    ACTIVE = "active", "Active"
    DISABLED = "disabled", "Disabled"


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
