"""Workflow services: create, publish a version, edit. Versions are immutable; a run keeps
the version it started with. Each service is atomic and audited."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from controlplane.entities import Entity, add_version, raise_at_paths
from runs.engine.validation import validate_definition
from runs.models import Workflow, WorkflowVersion
from runs.selectors import registry_view

WORKFLOWS = Entity(
    Workflow,
    "workflow",
    fields=("slug", "name", "description", "tags", "status"),
    clean_exclude=("current_version",),
)


def validate_workflow_definition(*, tenant: Any, definition: Any) -> None:
    """Raise a ValidationError listing every problem, each under its path."""
    if not isinstance(definition, dict):
        raise ValidationError({"definition": "Give the definition as a JSON object."})
    raise_at_paths(validate_definition(definition, registry_view(tenant)), under="definition")


def _new_version(
    workflow: Workflow, definition: dict, note: str, created_by: Any
) -> WorkflowVersion:
    return add_version(
        WorkflowVersion,
        owner_field="workflow",
        owner=workflow,
        current_field="current_version",
        definition=definition,
        note=note,
        created_by=created_by,
    )


@transaction.atomic
def workflow_create(
    *,
    tenant: Any,
    slug: str,
    name: str,
    definition: dict,
    description: str = "",
    tags: list[str] | None = None,
    note: str = "",
    created_by: Any = None,
) -> Workflow:
    """Create a workflow and its validated first version."""
    workflow = Workflow(
        tenant=tenant, slug=slug, name=name, description=description, tags=tags or []
    )
    WORKFLOWS.check_slug(workflow, slug)
    WORKFLOWS.clean(workflow)
    validate_workflow_definition(tenant=tenant, definition=definition)
    workflow.save()
    version = _new_version(workflow, definition, note or "first version", created_by)
    WORKFLOWS.record("create", workflow, after=WORKFLOWS.snapshot(workflow, version=version.number))
    return workflow


@transaction.atomic
def workflow_publish(
    *, workflow: Workflow, definition: dict, note: str = "", created_by: Any = None
) -> WorkflowVersion:
    """Validate and publish a new immutable version; runs already started keep theirs."""
    workflow = Workflow.objects.select_for_update().get(pk=workflow.pk)
    validate_workflow_definition(tenant=workflow.tenant, definition=definition)
    previous = workflow.current_version
    version = _new_version(workflow, definition, note, created_by)
    WORKFLOWS.record(
        "publish",
        workflow,
        before={"version": previous.number if previous else None},
        after={"version": version.number},
        metadata={"note": note},
    )
    return version


@transaction.atomic
def workflow_update(*, workflow: Workflow, **changes: Any) -> Workflow:
    """Edit metadata (name, description, tags, status, slug)."""
    return WORKFLOWS.update(workflow, changes)
