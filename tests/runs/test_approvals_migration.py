"""Approvals moving from policies to runs keep their rows, ids, votes and object grants.

Migrates back to the state before the move, writes a request and a vote with the historical
(policies) models and an object grant on the request, migrates forward and reads them back
through the new models.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from guardian.models import UserObjectPermission
from guardian.shortcuts import get_perms

from controlplane import context
from controlplane.audit.models import AuditEvent
from runs.approvals.models import ApprovalRequest, ApprovalVote
from runs.approvals.services import approval_create
from runs.models import Run

BEFORE = [("runs", "0005_run_agent_versions"), ("policies", "0006_decision_would_policy")]


def _migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    ContentType.objects.clear_cache()
    return executor


@pytest.mark.django_db(transaction=True)
def test_approvals_keep_their_rows_when_they_move_to_runs(world):
    run = Run.objects.for_tenant(world.acme).create(tenant=world.acme, definition={})
    leaves = MigrationExecutor(connection).loader.graph.leaf_nodes()
    try:
        old = _migrate(BEFORE).loader.project_state(BEFORE).apps
        OldRequest = old.get_model("policies", "ApprovalRequest")
        OldVote = old.get_model("policies", "ApprovalVote")
        request = OldRequest.objects.create(
            tenant_id=world.acme.pk,
            run_id=run.pk,
            kind="approval",
            title="Refund 120 EUR?",
            details={"amount": 120},
            required_role="admin",
            required_approvals=2,
        )
        vote = OldVote.objects.create(
            tenant_id=world.acme.pk, approval_id=request.pk, user_id=world.adam.pk, approve=True
        )
        # content types, permissions and grants keep their tables: the current models do
        old_type = ContentType.objects.get(app_label="policies", model="approvalrequest")
        grant = UserObjectPermission(
            user_id=world.bob.pk,
            permission=Permission.objects.get(
                content_type=old_type, codename="decide_approvalrequest"
            ),
            content_type=old_type,
            object_pk=str(request.pk),
        )
        UserObjectPermission.objects.bulk_create([grant])  # save() would resolve the object
    finally:
        _migrate(leaves)

    moved = ApprovalRequest.objects.unscoped().get(pk=request.pk)
    assert (moved.tenant_id, moved.run_id, moved.title, moved.details) == (
        world.acme.pk,
        run.pk,
        "Refund 120 EUR?",
        {"amount": 120},
    )
    assert (moved.status, moved.required_approvals) == ("pending", 2)
    [moved_vote] = ApprovalVote.objects.unscoped().filter(approval=moved)
    assert (moved_vote.pk, moved_vote.user_id, moved_vote.approve) == (
        vote.pk,
        world.adam.pk,
        True,
    )
    # the content type was renamed, not replaced: grants and permissions follow it
    new_type = ContentType.objects.get_for_model(ApprovalRequest)
    assert (new_type.pk, new_type.app_label) == (old_type.pk, "runs")
    assert not ContentType.objects.filter(app_label="policies", model="approvalrequest").exists()
    assert Permission.objects.get(codename="decide_approvalrequest").content_type == new_type
    assert "decide_approvalrequest" in get_perms(world.bob, moved)


@pytest.mark.django_db
def test_approval_audit_rows_keep_the_target_type_of_their_older_rows(world):
    run = Run.objects.for_tenant(world.acme).create(tenant=world.acme, definition={})
    with context.tenant_context(world.acme):
        approval = approval_create(run=run, step_run=None, kind="approval", title="Go?")
    event = AuditEvent.objects.for_tenant(world.acme).get(
        action="approval.create", target_id=str(approval.pk)
    )
    assert event.target_type == "policies.approvalrequest"
