"""Filters for the registry lists (API and dashboard)."""

import django_filters

from agents.models import (
    Agent,
    KnowledgeDocument,
    McpServer,
    ProviderConnection,
    Secret,
    Ticket,
    Tool,
    ToolGrant,
)
from controlplane.filters import ModelChoicesFilterSet, NamedFilterSet, search_filter


class RegistryFilterSet(NamedFilterSet):
    """Registry lists: a tag, the name/slug/description search, and the fields (with choices:
    status, kind, ...) that a subclass's ``Meta.fields`` names."""

    tag = django_filters.CharFilter(method="filter_tag", label="Has this tag")

    def filter_tag(self, queryset, name, value):
        # JSON list containment is not portable to SQLite; match the quoted element instead.
        return queryset.filter(tags__icontains=f'"{value}"')


class AgentFilterSet(RegistryFilterSet):
    class Meta:
        model = Agent
        fields = ["kind", "status"]


class ToolFilterSet(RegistryFilterSet):
    mcp_server = django_filters.CharFilter(field_name="mcp_server__slug")

    class Meta:
        model = Tool
        fields = ["kind", "risk", "status"]


class ProviderFilterSet(RegistryFilterSet):
    class Meta:
        model = ProviderConnection
        fields = ["kind", "status"]


class McpServerFilterSet(RegistryFilterSet):
    class Meta:
        model = McpServer
        fields = ["transport", "status"]


class SecretFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains")

    class Meta:
        model = Secret
        fields = []


class ToolGrantFilterSet(django_filters.FilterSet):
    tool = django_filters.CharFilter(field_name="tool__slug")
    agent = django_filters.CharFilter(field_name="agent__slug")
    agent_tag = django_filters.CharFilter()

    class Meta:
        model = ToolGrant
        fields = []


class KnowledgeDocumentFilterSet(django_filters.FilterSet):
    collection = django_filters.CharFilter()
    q = search_filter("title", "content")

    class Meta:
        model = KnowledgeDocument
        fields = ["collection"]


class TicketFilterSet(ModelChoicesFilterSet):
    q = search_filter("title", "description", "customer")

    class Meta:
        model = Ticket
        fields = ["status", "priority"]
