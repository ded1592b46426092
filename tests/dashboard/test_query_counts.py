"""Query counts of the dashboard's list pages and of pages about one object with related
rows: the count must not grow with the rows shown.

Each case renders its page with ``N`` rows, then with ``3 * N`` (still one page), as the
owner and as the viewer (when the viewer may open it), and asserts the same number of
queries both times: exactly equal, so a query per row anywhere (view, presenter, template,
navigation) fails with both lists of SQL. Every row carries a ``qcrow-<i>`` marker the page
must show, so a case proves it rendered the rows it added.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from agents.services.agents import agent_publish
from agents.services.tools import tool_grant_create
from agents.tools.mcp_client import DiscoveredTool
from agents.tools.mcp_services import _record as record_discovery
from controlplane import context
from controlplane.rbac.access import resolve_access
from controlplane.tenancy.choices import Role
from runs.approvals import services as approval_services
from runs.approvals.choices import ApprovalKind
from runs.choices import RunStatus, StepStatus
from runs.events import emit
from runs.models import StepRun
from tests.agents.registry_factories import (
    make_agent,
    make_document,
    make_mcp_server,
    make_provider,
    make_secret,
    make_tool,
)
from tests.dashboard.test_overview import add_run
from tests.dashboard.test_pages import client_for, issue_token, record_event, text
from tests.dashboard.test_run_pages import make_waiting, make_workflow, record_calls, start_run
from tests.factories import UserFactory, add_member
from tests.policies.test_pages import REFUND_RULE, make_policy, record, save_draft

pytestmark = pytest.mark.django_db

N = 4  # rows first; then 3 * N, which still fits one page of 50
MARKER = re.compile(r"qcrow-(\d+)")


def row(i: int) -> str:
    return f"qcrow-{i}"


def as_system(tenant):
    return context.system_context("tests", tenant=tenant)


@dataclasses.dataclass
class Case:
    """A page, what it needs before rows are added, and how one more row is added."""

    url: Callable[[Any, Any], str]  # (world, state) -> path
    add: Callable[[Any, Any, int], None]  # (world, state, i): one more row, marked row(i)
    setup: Callable[[Any], Any] = lambda world: None  # -> state
    marked: bool = True  # False: the page shows aggregates, not the rows themselves


# cases -------------------------------------------------------------------------------------


def _overview_setup(world):
    return {"workflow": make_workflow(world.acme), "agents": []}


def _overview_add(world, state, i):
    agent = make_agent(world.acme, slug=row(i))
    add_run(
        world.acme,
        state["workflow"],
        status=[RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED][i % 3],
        ago=datetime.timedelta(days=i % 12, hours=i),
        seconds=i + 1,
        failed_agent=agent,
        failed_tool=row(i),
    )
    record_event(world.acme, "bulk.event", row(i))


def _runs_add(world, state, i):
    # a workflow per run: the list's workflow links come from the select_related rows
    run = start_run(world.acme, make_workflow(world.acme, slug=row(i)), user=world.oscar)
    if i % 2:
        make_waiting(run)


def _run_detail_setup(world):
    agent = make_agent(world.acme, slug="helper")
    run = start_run(world.acme, make_workflow(world.acme), user=world.oscar)
    make_waiting(run)
    return {"run": run, "version": agent.current_version}


def _run_detail_add(world, state, i):
    """One more step (with its agent version), its approval, and its calls in the timeline."""
    run = state["run"]
    step = StepRun.objects.for_tenant(world.acme).create(
        tenant=world.acme,
        run=run,
        step_key=row(i),
        step_type="agent",
        status=StepStatus.WAITING,
        agent_version=state["version"],
        position=10 + i,
    )
    with as_system(world.acme):
        approval_services.approval_create(
            run=run,
            step_run=step,
            kind=ApprovalKind.APPROVAL,
            title=f"Go on with {row(i)}?",
            required_role=Role.ADMIN,
            required_approvals=2 if i % 2 else 1,
        )
        emit(run=run, type="step.started", step_key=row(i), payload={})
    record_calls(run)


def _agent_detail_setup(world):
    provider = make_provider(world.acme, slug="sim")
    return {"agent": make_agent(world.acme, slug="triage", provider=provider, tags=["support"])}


def _agent_detail_add(world, state, i):
    """One more tool granted (directly, or through the agent's tag) and one more version."""
    tool = make_tool(world.acme, slug=row(i))
    with as_system(world.acme):
        if i % 2:
            tool_grant_create(tool=tool, agent_tag="support")
        else:
            tool_grant_create(tool=tool, agent=state["agent"])
        agent_publish(
            agent=state["agent"],
            config={"provider": "sim", "model": "sim-1", "system_prompt": "You help."},
            note=f"note {row(i)}",
            created_by=world.alice,
        )


def _tools_setup(world):
    return {"server": make_mcp_server(world.acme, slug="srv")}


def _tools_add(world, state, i):
    if i % 2:
        make_tool(world.acme, slug=row(i))
    else:  # discovered from an MCP server: the list links the server
        _discover(state["server"], [row(j) for j in range(0, i + 1, 2)])


def _discover(server, names: list[str]) -> None:
    found = [
        DiscoveredTool(name=name, description="", input_schema={"type": "object"}, output_schema={})
        for name in names
    ]
    with as_system(server.tenant):
        record_discovery(server, found)


def _tool_detail_setup(world):
    return {"tool": make_tool(world.acme, slug="calc")}


def _tool_detail_add(world, state, i):
    with as_system(world.acme):
        if i % 2:
            tool_grant_create(tool=state["tool"], agent_tag=row(i))
        else:
            agent = make_agent(world.acme, slug=row(i))
            tool_grant_create(tool=state["tool"], agent=agent)


def _mcp_servers_add(world, state, i):
    server = make_mcp_server(world.acme, slug=row(i))
    _discover(server, ["search", "fetch"])


def _mcp_detail_setup(world):
    return {"server": make_mcp_server(world.acme, slug="srv"), "names": []}


def _mcp_detail_add(world, state, i):
    state["names"].append(row(i))
    _discover(state["server"], state["names"])


def _workflows_add(world, state, i):
    workflow = make_workflow(world.acme, slug=row(i))
    if i % 2:
        start_run(world.acme, workflow)


def _workflow_detail_setup(world):
    return {"workflow": make_workflow(world.acme)}


def _workflow_detail_add(world, state, i):
    """One more version and one more recent run."""
    workflow = state["workflow"]
    with as_system(world.acme):
        from runs import workflow_services

        workflow_services.workflow_publish(
            workflow=workflow,
            definition=workflow.current_version.definition,
            note=f"note {row(i)}",
            created_by=world.alice,
        )
    workflow.refresh_from_db()
    start_run(world.acme, workflow, user=world.oscar)


def _approvals_setup(world):
    return {"workflow": make_workflow(world.acme), "policy": make_policy(world.acme)}


def _approvals_add(world, state, i):
    """Approval requests of every shape: plain, a quorum with a vote, asked by a policy."""
    run = start_run(world.acme, state["workflow"])
    step = StepRun.objects.for_tenant(world.acme).get(run=run, step_key="check")
    with as_system(world.acme):
        if i % 2:
            approval_services.approval_create(
                run=run,
                step_run=step,
                kind=ApprovalKind.POLICY,
                title=f"Approve {row(i)}",
                details={
                    "action": "call_tool",
                    "agent": "payer",
                    "tool": "refund",
                    "arguments": {"amount": 150},
                    "reason": "rule big-refunds",
                    "rule": "big-refunds",
                    "policy": state["policy"].slug,
                },
                policy=state["policy"],
                rule="big-refunds",
                inputs_hash=f"hash-{i}",
            )
        else:
            approval = approval_services.approval_create(
                run=run,
                step_run=step,
                kind=ApprovalKind.APPROVAL,
                title=f"Approve {row(i)}",
                details={"customer": row(i)},
                required_role=Role.ADMIN,
                required_approvals=2,
            )
            approval_services.approval_decide(
                approval=approval,
                approve=True,
                user=world.adam,
                access=resolve_access(user=world.adam, tenant_slug="acme"),
                comment="fine",
            )


def _votes_setup(world):
    run = start_run(world.acme, make_workflow(world.acme))
    return {"approval": make_waiting(run, required_approvals=100)}


def _votes_add(world, state, i):
    """One more admin's approving vote on a request that needs a hundred."""
    voter = UserFactory(username=row(i))
    add_member(world.acme, voter, Role.ADMIN)
    with as_system(world.acme):
        approval_services.approval_decide(
            approval=state["approval"],
            approve=True,
            user=voter,
            access=resolve_access(user=voter, tenant_slug="acme"),
            comment=f"fine by {row(i)}",
        )


def _members_add(world, state, i):
    add_member(world.acme, UserFactory(username=row(i)), [Role.VIEWER, Role.OPERATOR][i % 2])


def _tokens_add(world, state, i):
    issue_token(world.acme, [world.bob, world.oscar][i % 2], row(i))


def _policies_add(world, state, i):
    policy = make_policy(world.acme, slug=row(i), activate=bool(i % 2))
    save_draft(policy, {"rules": [REFUND_RULE]}, note="second")


def _policy_detail_setup(world):
    return {"policy": make_policy(world.acme)}


def _policy_detail_add(world, state, i):
    save_draft(
        state["policy"],
        {"rules": [{**REFUND_RULE, "id": row(i)}]},
        note=f"note {row(i)}",
    )


def _simulate_setup(world):
    policy = make_policy(world.acme, activate=False)
    return {"policy": policy, "run": start_run(world.acme, make_workflow(world.acme))}


def _decisions_setup(world):
    policy = make_policy(world.acme)
    return {"policy": policy, "run": start_run(world.acme, make_workflow(world.acme))}


def _decisions_add(world, state, i):
    decision = record(
        world.acme,
        run=state["run"] if i % 2 else None,
        tool=row(i),
        agent="payer",
        args={"amount": 50 * i},
        effect=["allow", "deny", "require_approval"][i % 3],
    )
    if i % 2:
        active = state["policy"].active_version
        type(decision).objects.for_tenant(world.acme).filter(pk=decision.pk).update(
            policy=state["policy"], policy_version=active, rule="big-refunds"
        )


CASES: dict[str, Case] = {
    "overview": Case(
        url=lambda w, s: "/t/acme/",
        setup=_overview_setup,
        add=_overview_add,
        marked=False,  # aggregates and a top five: the rows themselves are not listed
    ),
    "runs": Case(url=lambda w, s: "/t/acme/runs/", add=_runs_add),
    "run-detail": Case(
        url=lambda w, s: f"/t/acme/runs/{s['run'].pk}/",
        setup=_run_detail_setup,
        add=_run_detail_add,
    ),
    "agents": Case(
        url=lambda w, s: "/t/acme/agents/",
        add=lambda w, s, i: make_agent(w.acme, slug=row(i), tags=["support", row(i)]),
    ),
    "agent-detail": Case(
        url=lambda w, s: "/t/acme/agents/triage/",
        setup=_agent_detail_setup,
        add=_agent_detail_add,
    ),
    "tools": Case(url=lambda w, s: "/t/acme/tools/", setup=_tools_setup, add=_tools_add),
    "tool-detail": Case(
        url=lambda w, s: "/t/acme/tools/calc/",
        setup=_tool_detail_setup,
        add=_tool_detail_add,
    ),
    "providers": Case(
        url=lambda w, s: "/t/acme/providers/",
        add=lambda w, s, i: make_provider(w.acme, slug=row(i)),
    ),
    "mcp-servers": Case(url=lambda w, s: "/t/acme/mcp-servers/", add=_mcp_servers_add),
    "mcp-server-detail": Case(
        url=lambda w, s: "/t/acme/mcp-servers/srv/",
        setup=_mcp_detail_setup,
        add=_mcp_detail_add,
    ),
    "secrets": Case(
        url=lambda w, s: "/t/acme/secrets/", add=lambda w, s, i: make_secret(w.acme, row(i))
    ),
    "knowledge": Case(
        url=lambda w, s: "/t/acme/knowledge/",
        add=lambda w, s, i: make_document(w.acme, title=row(i)),
    ),
    "workflows": Case(url=lambda w, s: "/t/acme/workflows/", add=_workflows_add),
    "workflow-detail": Case(
        url=lambda w, s: "/t/acme/workflows/refunds/",
        setup=_workflow_detail_setup,
        add=_workflow_detail_add,
    ),
    "approvals": Case(
        url=lambda w, s: "/t/acme/approvals/", setup=_approvals_setup, add=_approvals_add
    ),
    "approval-detail": Case(
        url=lambda w, s: f"/t/acme/approvals/{s['approval'].pk}/",
        setup=_votes_setup,
        add=_votes_add,
    ),
    "audit": Case(
        url=lambda w, s: "/t/acme/audit/",
        add=lambda w, s, i: record_event(w.acme, "bulk.event", row(i)),
    ),
    "members": Case(url=lambda w, s: "/t/acme/members/", add=_members_add),
    "tokens": Case(url=lambda w, s: "/t/acme/tokens/", add=_tokens_add),
    "policies": Case(url=lambda w, s: "/t/acme/policies/", add=_policies_add),
    "policy-detail": Case(
        url=lambda w, s: "/t/acme/policies/refund-guard/",
        setup=_policy_detail_setup,
        add=_policy_detail_add,
    ),
    "policy-simulate": Case(
        url=lambda w, s: "/t/acme/policies/refund-guard/simulate/?version=1&limit=200",
        setup=_simulate_setup,
        add=_decisions_add,
        marked=False,  # the replay shows counts and the changed decisions only
    ),
    "policy-decisions": Case(
        url=lambda w, s: "/t/acme/policies/decisions/", setup=_decisions_setup, add=_decisions_add
    ),
}


# the test ----------------------------------------------------------------------------------


def render(client: Client, url: str) -> tuple[int, list[str], str]:
    """(status, SQL of the second of two GETs, its body): the first warms per-process caches."""
    client.get(url)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    return response.status_code, [q["sql"] for q in captured.captured_queries], text(response)


def shown_rows(body: str) -> set[int]:
    return {int(i) for i in MARKER.findall(body)}


def sql_diff(few: list[str], many: list[str]) -> str:
    return "\n".join(difflib.unified_diff(few, many, "N rows", "3N rows", lineterm="", n=1))


def test_every_case_names_a_distinct_page():
    paths = [case.url for case in CASES.values()]
    assert len(paths) == len(set(paths))


@pytest.mark.parametrize("name", list(CASES))
def test_queries_do_not_grow_with_rows(world, name):
    case = CASES[name]
    state = case.setup(world)
    clients = {"owner": client_for(world.alice), "viewer": client_for(world.bob)}

    def add(start: int, stop: int) -> None:
        for i in range(start, stop):
            case.add(world, state, i)

    def measure(total: int) -> dict[str, list[str]]:
        url = case.url(world, state)
        counts = {}
        for who, client in clients.items():
            status, queries, body = render(client, url)
            if who == "viewer" and status == 403:
                continue  # the page needs more than a viewer has (tokens, simulation)
            assert status == 200, (who, url, status)
            if case.marked:
                assert shown_rows(body) == set(range(total)), (who, sorted(shown_rows(body)))
            counts[who] = queries
        return counts

    add(0, N)
    few = measure(N)
    add(N, 3 * N)
    many = measure(3 * N)
    assert few.keys() == many.keys()
    assert "owner" in few
    for who in few:
        assert len(many[who]) == len(few[who]), (
            f"{name} as {who}: {len(few[who])} queries with {N} rows, {len(many[who])} with "
            f"{3 * N}:\n{sql_diff(few[who], many[who])}"
        )
