"""Approvals a policy asks for, on a real worker: two people deciding at the same moment,
a quorum reached concurrently, expiry with its configured outcome, guardian approvers."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.utils import timezone

from agents.models import Ticket
from controlplane import context
from controlplane.rbac.access import resolve_access
from controlplane.rbac.grants import object_permission_grant
from runs.approvals import services as approval_services
from runs.approvals.models import ApprovalRequest, ApprovalVote
from runs.models import RunEvent
from tests.runs.conftest import wait_for_run
from tests.runs.test_engine import _approval, _start, _workflow
from tests.runs.test_policy_enforcement import REFUND_OVER_100, _policy, _refund_agent, acme  # noqa: F401


def _with_approvers(**approvers):
    definition = json.loads(json.dumps(REFUND_OVER_100))
    definition["rules"][0]["approvers"] = {"role": "admin", **approvers}
    return definition


def _decide_as(world, user, approval, approve=True):
    access = resolve_access(user=user, tenant_slug="acme")
    with context.using(tenant=world.acme, user=user):
        return approval_services.approval_decide(
            approval=ApprovalRequest.objects.unscoped().get(pk=approval.pk),
            approve=approve,
            user=user,
            access=access,
            comment=f"by {user.username}",
        )


def _race(world, deciders):
    """Each (user, approve) decides in its own thread, released at the same moment."""
    barrier = threading.Barrier(len(deciders))
    outcomes: list[object] = [None] * len(deciders)

    def decide(index, user, approve, approval):
        try:
            barrier.wait(timeout=10)
            outcomes[index] = _decide_as(world, user, approval, approve).status
        except (ValidationError, PermissionDenied) as exc:
            outcomes[index] = exc
        finally:
            connection.close()

    return outcomes, decide


def _requeues(run):
    return RunEvent.objects.unscoped().filter(run_id=run.pk, type="step.requeued").count()


def test_two_people_deciding_at_once_resume_the_run_exactly_once(acme, worker):  # noqa: F811
    world = acme
    workflow = _refund_agent(world, 150)  # the policy names its tool
    _policy(world, REFUND_OVER_100)
    run = _start(world, workflow)
    approval = _approval(run)
    outcomes, decide = _race(world, [(world.alice, True), (world.adam, True)])
    threads = [
        threading.Thread(target=decide, args=(i, user, True, approval))
        for i, user in enumerate([world.alice, world.adam])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    wins = [o for o in outcomes if o == "approved"]
    losses = [o for o in outcomes if isinstance(o, ValidationError)]
    assert len(wins) == 1 and len(losses) == 1, outcomes
    assert "already approved" in str(losses[0])
    run = wait_for_run(run)
    assert run.status == "succeeded", run.status_reason
    assert _requeues(run) == 1
    assert Ticket.objects.for_tenant(world.acme).count() == 1


def test_a_quorum_reached_by_simultaneous_votes_decides_once(acme, worker):  # noqa: F811
    world = acme
    workflow = _refund_agent(world, 150)  # the policy names its tool
    _policy(world, _with_approvers(quorum=2))
    run = _start(world, workflow)
    approval = _approval(run)
    outcomes, decide = _race(world, [(world.alice, True), (world.adam, True)])
    threads = [
        threading.Thread(target=decide, args=(i, user, True, approval))
        for i, user in enumerate([world.alice, world.adam])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(outcomes) == ["approved", "pending"], outcomes
    assert ApprovalVote.objects.for_tenant(world.acme).filter(approval_id=approval.pk).count() == 2
    run = wait_for_run(run)
    assert run.status == "succeeded", run.status_reason
    assert _requeues(run) == 1
    assert Ticket.objects.for_tenant(world.acme).count() == 1


def test_one_deny_decides_even_when_a_quorum_is_needed(acme, worker):  # noqa: F811
    world = acme
    workflow = _refund_agent(world, 150)  # the policy names its tool
    _policy(world, _with_approvers(quorum=2))
    run = _start(world, workflow)
    approval = _approval(run)
    assert _decide_as(world, world.alice, approval, approve=True).status == "pending"
    assert _decide_as(world, world.adam, approval, approve=False).status == "denied"
    run = wait_for_run(run)
    assert run.status == "succeeded", run.status_reason  # the agent went on without it
    assert Ticket.objects.for_tenant(world.acme).count() == 0


@pytest.mark.parametrize(("on_expiry", "tickets"), [("deny", 0), ("approve", 1)])
def test_expiry_applies_the_configured_outcome(acme, worker, on_expiry, tickets):  # noqa: F811
    world = acme
    workflow = _refund_agent(world, 150)  # the policy names its tool
    _policy(world, _with_approvers(expires_after_minutes=5, on_expiry=on_expiry))
    run = _start(world, workflow)
    approval = _approval(run)
    assert approval.on_timeout == on_expiry
    assert approval.expires_at > timezone.now() + timedelta(minutes=4)
    ApprovalRequest.objects.unscoped().filter(pk=approval.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert approval_services.approvals_expire() == 1
    approval.refresh_from_db()
    assert approval.status == "expired"
    run = wait_for_run(run)
    assert run.status == "succeeded", run.status_reason
    assert Ticket.objects.for_tenant(world.acme).count() == tickets
    assert approval_services.approvals_expire() == 0  # nothing left to expire


def test_a_guardian_grant_on_the_policy_lets_a_viewer_decide(acme, worker):  # noqa: F811
    world = acme
    workflow = _refund_agent(world, 150)  # the policy names its tool
    policy = _policy(world, REFUND_OVER_100)
    run = _start(world, workflow)
    approval = _approval(run)
    with pytest.raises(PermissionDenied):
        _decide_as(world, world.bob, approval)  # a viewer, without a grant
    with context.system_context("tests", tenant=world.acme):
        object_permission_grant(user=world.bob, perm="policies.approve_policy", obj=policy)
    assert _decide_as(world, world.bob, approval).status == "approved"
    run = wait_for_run(run)
    assert run.status == "succeeded", run.status_reason
    assert Ticket.objects.for_tenant(world.acme).count() == 1


def test_a_guardian_grant_on_the_workflow_lets_an_operator_decide_its_approval_step(
    acme,  # noqa: F811
    worker,
):
    world = acme
    wf = _workflow(
        world,
        "gate",
        [{"id": "gate", "type": "approval", "title": "Go?", "approvers": "admin"}],
    )
    run = _start(world, wf)
    approval = _approval(run)
    with pytest.raises(PermissionDenied):
        _decide_as(world, world.oscar, approval)
    with context.system_context("tests", tenant=world.acme):
        object_permission_grant(user=world.oscar, perm="runs.approve_workflow", obj=wf)
    assert _decide_as(world, world.oscar, approval).status == "approved"
    assert wait_for_run(run).status == "succeeded"
