"""controlplane.filters: choice filters built from the model's own choices. No DB."""

import django_filters
import pytest

from agents.filtersets import AgentFilterSet, McpServerFilterSet, TicketFilterSet, ToolFilterSet
from agents.models import Agent, McpServer, Ticket, Tool
from policies.filtersets import PolicyDecisionFilterSet, PolicyFilterSet
from policies.models import Policy, PolicyDecision
from runs.filtersets import WorkflowFilterSet
from runs.models import Workflow


@pytest.mark.parametrize(
    ("filterset", "model", "name"),
    [
        (AgentFilterSet, Agent, "kind"),
        (AgentFilterSet, Agent, "status"),
        (ToolFilterSet, Tool, "risk"),
        (McpServerFilterSet, McpServer, "transport"),
        (TicketFilterSet, Ticket, "priority"),
        (PolicyFilterSet, Policy, "mode"),
        (PolicyDecisionFilterSet, PolicyDecision, "effect"),
        (WorkflowFilterSet, Workflow, "status"),
    ],
)
def test_a_choice_field_in_meta_fields_filters_by_the_models_choices(filterset, model, name):
    # built at import, outside any tenant: the tenant-scoped manager was never asked
    found = filterset.base_filters[name]
    assert type(found) is django_filters.ChoiceFilter
    assert (found.field_name, found.lookup_expr) == (name, "exact")
    assert list(found.extra["choices"]) == list(model._meta.get_field(name).choices)
