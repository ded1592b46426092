"""Per-object grants (django-guardian) never outlive what they were about.

* An object deleted through its service takes every grant on it along (policies, tool grants,
  secrets, knowledge documents).
* An object deleted any other way (a cascade from its parent, a shell, a future service) does
  too: agents, tools, workflows with their runs and approvals. A grant row left behind would
  point at a primary key that a later object can reuse.
* A member who leaves a tenant keeps no grant on its objects: added back later, as a viewer
  say, they would otherwise silently regain "approve this policy" or "use this agent".
"""

from __future__ import annotations

from unittest import mock

import pytest
from django.contrib.contenttypes.models import ContentType
from guardian.models import UserObjectPermission

from agents.models import Agent, Tool
from agents.services.knowledge import knowledge_document_delete
from agents.services.secrets import secret_delete
from agents.services.tools import tool_grant_delete
from controlplane import context
from controlplane.rbac.access import resolve_access
from controlplane.rbac.grants import GRANTABLE_MODELS, grant_object_perm
from controlplane.tenancy import services as tenancy_services
from controlplane.tenancy.choices import Role
from controlplane.tenancy.models import Membership
from policies import services as policy_services
from policies.models import Policy
from runs import workflow_services
from runs.approvals.models import ApprovalRequest
from runs.execution import progress
from runs.models import Run
from tests.factories import add_member
from tests.test_tenant_matrix import WORKFLOW_DEFINITION, Objects

pytestmark = pytest.mark.django_db


@pytest.fixture
def objects(world):
    with mock.patch.object(progress, "dispatch"):
        yield Objects(world)


def grants_on(obj) -> list[tuple[str, str]]:
    rows = UserObjectPermission.objects.filter(
        content_type=ContentType.objects.get_for_model(obj), object_pk=str(obj.pk)
    )
    return sorted(rows.values_list("user__username", "permission__codename"))


def _get(model, tenant, **lookup):
    return model.objects.for_tenant(tenant).get(**lookup)


def test_deleting_a_policy_through_its_service_removes_its_grants(world, objects):
    policy = _get(Policy, world.acme, slug=objects.keys("policy", world.acme)["slug"])
    grant_object_perm(user=world.bob, perm="policies.approve_policy", obj=policy)
    grant_object_perm(user=world.oscar, perm="policies.change_policy", obj=policy)
    assert len(grants_on(policy)) == 2
    with context.system_context("tests", tenant=world.acme):
        policy_services.policy_delete(policy=policy)
    assert grants_on(policy) == []


@pytest.mark.parametrize("kind", ["secret", "document", "tool_grant"])
def test_deleting_other_objects_through_their_services_removes_their_grants(kind, world, objects):
    from agents.models import KnowledgeDocument, Secret, ToolGrant

    model, perm, delete = {
        "secret": (Secret, "agents.view_secret", secret_delete),
        "document": (
            KnowledgeDocument,
            "agents.change_knowledgedocument",
            knowledge_document_delete,
        ),
        "tool_grant": (ToolGrant, "agents.delete_toolgrant", tool_grant_delete),
    }[kind]
    keys = objects.keys(kind, world.acme)
    obj = _get(model, world.acme, **({"name": keys["name"]} if "name" in keys else keys))
    grant_object_perm(user=world.bob, perm=perm, obj=obj)
    argument = {"secret": "secret", "document": "document", "tool_grant": "grant"}[kind]
    with context.system_context("tests", tenant=world.acme):
        delete(**{argument: obj})
    assert grants_on(obj) == []


def test_objects_deleted_without_a_service_lose_their_grants_too(world, objects):
    """Agents, tools and workflows are disabled, not deleted, by the product, and runs are
    kept; when one is deleted all the same (a run with its approval requests), no grant
    stays behind."""
    agent = _get(Agent, world.acme, slug=objects.keys("agent", world.acme)["slug"])
    tool = _get(Tool, world.acme, slug=objects.keys("tool", world.acme)["slug"])
    approval = _get(ApprovalRequest, world.acme, pk=objects.keys("approval", world.acme)["pk"])
    run = _get(Run, world.acme, pk=approval.run_id)
    with context.system_context("tests", tenant=world.acme):
        workflow = workflow_services.workflow_create(
            tenant=world.acme, slug="unused", name="Unused", definition=WORKFLOW_DEFINITION
        )
    grant_object_perm(user=world.bob, perm="agents.use_agent", obj=agent)
    grant_object_perm(user=world.bob, perm="agents.use_tool", obj=tool)
    grant_object_perm(user=world.bob, perm="runs.approve_workflow", obj=workflow)
    grant_object_perm(user=world.oscar, perm="runs.run_workflow", obj=workflow)
    grant_object_perm(user=world.bob, perm="runs.cancel_run", obj=run)
    grant_object_perm(user=world.bob, perm="runs.decide_approvalrequest", obj=approval)
    # globex's grants are not touched by any of this
    theirs = _get(Agent, world.globex, slug=objects.keys("agent", world.globex)["slug"])
    grant_object_perm(user=world.charlie, perm="agents.use_agent", obj=theirs)

    with context.system_context("tests", tenant=world.acme):
        run.delete()  # cascades to its approval requests
        agent.delete()
        tool.delete()
        workflow.delete()

    for obj in (agent, tool, workflow, run, approval):
        assert grants_on(obj) == [], obj
    assert grants_on(theirs) == [("charlie", "use_agent")]


def test_every_model_with_object_permissions_has_its_grants_cleaned_up():
    """A model that declares per-object permissions is in GRANTABLE_MODELS (whose deletion
    removes grants); a new one that is not fails here, naming it."""
    from django.apps import apps

    declared = {
        model._meta.label
        for model in apps.get_models()
        if model._meta.permissions and model._meta.app_label in ("agents", "runs", "policies")
    }
    assert declared, "no model declares object permissions: the walk is broken"
    missing = declared - set(GRANTABLE_MODELS)
    assert not missing, f"add to controlplane.rbac.grants.GRANTABLE_MODELS: {sorted(missing)}"


def test_a_member_who_leaves_keeps_no_grant_and_regains_none_when_added_back(world, objects):
    policy = _get(Policy, world.acme, slug=objects.keys("policy", world.acme)["slug"])
    agent = _get(Agent, world.acme, slug=objects.keys("agent", world.acme)["slug"])
    grant_object_perm(user=world.bob, perm="policies.approve_policy", obj=policy)
    grant_object_perm(user=world.bob, perm="agents.use_agent", obj=agent)
    grant_object_perm(user=world.oscar, perm="agents.use_agent", obj=agent)
    # bob also belongs to globex, where his grant must stay
    add_member(world.globex, world.bob, Role.VIEWER)
    theirs = _get(Agent, world.globex, slug=objects.keys("agent", world.globex)["slug"])
    grant_object_perm(user=world.bob, perm="agents.use_agent", obj=theirs)

    membership = Membership.objects.for_tenant(world.acme).get(user=world.bob)
    with context.system_context("tests", tenant=world.acme):
        tenancy_services.membership_remove(membership=membership, actor_role=Role.OWNER)
    assert grants_on(policy) == []
    assert grants_on(agent) == [("oscar", "use_agent")]
    assert grants_on(theirs) == [("bob", "use_agent")]

    with context.system_context("tests", tenant=world.acme):
        tenancy_services.membership_add(tenant=world.acme, user=world.bob, role=Role.VIEWER)
    access = resolve_access(user=world.bob, tenant_slug="acme")
    assert not access.has_perm("policies.approve_policy", policy)
    assert not access.has_perm("agents.use_agent", agent)
