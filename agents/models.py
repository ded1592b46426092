"""The registry: agents with immutable versions, tools, grants, providers, MCP servers, secrets.

Also the tenant tables built-in tools act on (knowledge-base documents, tickets).
Every model is tenant-scoped (fail-closed manager) and addressed by its slug.
"""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from agents.choices import (
    AgentKind,
    McpTransport,
    ProviderKind,
    Risk,
    TicketPriority,
    TicketStatus,
    ToolKind,
)
from controlplane.crypto import EncryptedJSONField, EncryptedTextField
from controlplane.model_bases import (
    ImmutableVersion,
    ManagedObject,
    TimestampedObject,
    version_meta,
)
from controlplane.tenancy.managers import TenantScopedModel
from controlplane.tenancy.models import slug_validator


class Secret(TimestampedObject):
    """A named credential (encrypted at rest, write-only) that tools and http agents reference."""

    name = models.CharField(max_length=100, validators=[slug_validator])
    description = models.TextField(blank=True)
    value = EncryptedTextField()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="secret_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name


class ProviderConnection(ManagedObject):
    """A model provider: an OpenAI-compatible base URL, Anthropic, or the offline simulator.

    ``models`` lists ``{"name", "input_per_mtok", "output_per_mtok"}`` (prices in USD per
    million tokens) used for cost accounting. The API key is encrypted and write-only.
    """

    kind = models.CharField(max_length=16, choices=ProviderKind.choices)
    base_url = models.URLField(max_length=500, blank=True)
    api_key = EncryptedTextField(blank=True)
    api_key_env = models.CharField(
        max_length=100,
        blank=True,
        help_text="Read the key from this environment variable when no key is stored.",
    )
    timeout_seconds = models.PositiveIntegerField(default=60)
    max_concurrency = models.PositiveIntegerField(
        default=100,
        validators=[MinValueValidator(1), MaxValueValidator(10000)],
        help_text="Most requests this provider may have in flight at once, across every worker; "
        "more wait for a slot.",
    )
    last_test_at = models.DateTimeField(null=True, blank=True)
    last_test_ok = models.BooleanField(null=True, blank=True)
    last_test_message = models.TextField(blank=True)
    # Declared last: the name shadows the ``models`` module inside this class body.
    models = models.JSONField(default=list, blank=True)

    class Meta(ManagedObject.Meta):
        constraints = [
            models.UniqueConstraint(fields=["tenant", "slug"], name="provider_unique_slug"),
        ]

    def price_of(self, model: str) -> tuple[float, float]:
        for entry in self.models:
            if entry.get("name") == model:
                return float(entry.get("input_per_mtok", 0)), float(entry.get("output_per_mtok", 0))
        return 0.0, 0.0

    @property
    def model_names(self) -> list[str]:
        return [m["name"] for m in self.models if "name" in m]


class McpServer(ManagedObject):
    """An MCP server reached by streamable HTTP or a stdio command; its tools become Tools."""

    transport = models.CharField(max_length=8, choices=McpTransport.choices)
    url = models.URLField(max_length=500, blank=True)
    command = models.CharField(max_length=500, blank=True)
    args = models.JSONField(default=list, blank=True)
    secret_headers = EncryptedJSONField(blank=True, default=dict)
    secret_env = EncryptedJSONField(blank=True, default=dict)
    timeout_seconds = models.PositiveIntegerField(default=30)
    last_discovered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta(ManagedObject.Meta):
        constraints = [
            models.UniqueConstraint(fields=["tenant", "slug"], name="mcpserver_unique_slug"),
        ]


class Tool(ManagedObject):
    """Something an agent can call: a built-in function, an HTTP endpoint or an MCP tool.

    Arguments are validated against ``input_schema`` and results against
    ``output_schema`` on every call. ``risk`` is what policies match on.
    """

    kind = models.CharField(max_length=16, choices=ToolKind.choices)
    builtin = models.CharField(max_length=50, blank=True)
    config = models.JSONField(default=dict, blank=True)
    url = models.URLField(max_length=1000, blank=True)
    method = models.CharField(max_length=8, blank=True)
    headers = models.JSONField(default=dict, blank=True)
    secret_headers = EncryptedJSONField(blank=True, default=dict)
    allowed_hosts = models.JSONField(default=list, blank=True)
    mcp_server = models.ForeignKey(
        McpServer, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    mcp_tool_name = models.CharField(max_length=200, blank=True)
    input_schema = models.JSONField(default=dict, blank=True)
    output_schema = models.JSONField(default=dict, blank=True)
    risk = models.CharField(max_length=16, choices=Risk.choices, default=Risk.READ)
    timeout_seconds = models.PositiveIntegerField(default=30)

    class Meta(ManagedObject.Meta):
        constraints = [
            models.UniqueConstraint(fields=["tenant", "slug"], name="tool_unique_slug"),
        ]
        permissions = [("use_tool", "Use the tool in runs")]


class Agent(ManagedObject):
    """A registered agent; what it does lives in its immutable versions (``current_version``)."""

    kind = models.CharField(max_length=16, choices=AgentKind.choices)
    current_version = models.ForeignKey(
        "AgentVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta(ManagedObject.Meta):
        constraints = [
            models.UniqueConstraint(fields=["tenant", "slug"], name="agent_unique_slug"),
        ]
        permissions = [("use_agent", "Use the agent in runs")]


class AgentVersion(ImmutableVersion):
    """One immutable configuration of an agent. Runs pin a version; rollback copies an old one.

    ``config`` holds the kind's settings (llm: provider, model, system_prompt, temperature,
    max_tokens, output_schema, max_iterations; http: url, timeout_seconds, auth_header,
    auth_secret; router: mode, rules or classifier; human: instructions, response_schema).
    ``tools`` pins the granted tools at publish time as ``[{"id", "slug"}]``.
    """

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="+")
    config = models.JSONField(default=dict)
    tools = models.JSONField(default=list, blank=True)
    rolled_back_from = models.PositiveIntegerField(null=True, blank=True)

    Meta = version_meta("agent")

    def __str__(self) -> str:
        return f"{self.agent.slug} v{self.number}"


class ToolGrant(TenantScopedModel):
    """Lets an agent (by slug) or every agent carrying a tag use a tool."""

    tool = models.ForeignKey(Tool, on_delete=models.CASCADE, related_name="+")
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    agent_tag = models.CharField(max_length=50, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(agent__isnull=False, agent_tag="")
                    | models.Q(agent__isnull=True) & ~models.Q(agent_tag="")
                ),
                name="toolgrant_agent_xor_tag",
            ),
            models.UniqueConstraint(
                fields=["tool", "agent"],
                condition=models.Q(agent__isnull=False),
                name="toolgrant_unique_agent",
            ),
            models.UniqueConstraint(
                fields=["tool", "agent_tag"],
                condition=~models.Q(agent_tag=""),
                name="toolgrant_unique_tag",
            ),
        ]

    def __str__(self) -> str:
        target = self.agent.slug if self.agent_id else f"tag:{self.agent_tag}"
        return f"{self.tool.slug} -> {target}"


class KnowledgeDocument(TimestampedObject):
    """A document of the tenant's knowledge base, searched by the kb_search built-in tool."""

    collection = models.CharField(max_length=50, default="default", validators=[slug_validator])
    title = models.CharField(max_length=300)
    content = models.TextField()
    tags = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["collection", "title"]

    def __str__(self) -> str:
        return self.title


class Ticket(TimestampedObject):
    """A support ticket written by the ticket built-in tools (a real side effect for demos).

    ``idempotency_key`` makes a retried create return the first ticket instead of a second.
    """

    number = models.PositiveIntegerField()
    title = models.CharField(max_length=300)
    description = models.TextField(blank=True)
    status = models.CharField(
        max_length=16, choices=TicketStatus.choices, default=TicketStatus.OPEN
    )
    priority = models.CharField(
        max_length=16, choices=TicketPriority.choices, default=TicketPriority.NORMAL
    )
    customer = models.CharField(max_length=200, blank=True)
    data = models.JSONField(default=dict, blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "number"], name="ticket_unique_number"),
            models.UniqueConstraint(
                fields=["tenant", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="ticket_unique_idempotency_key",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.number} {self.title}"
