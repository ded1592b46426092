"""Workflows and runs API. Start runs with an Idempotency-Key header to make retries safe."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from agents.models import Agent
from controlplane.api.base import (
    ServiceCreateMixin,
    SlugLookupMixin,
    TenantScopedViewMixin,
    TenantViewSet,
    definition_schema_view,
)
from controlplane.rbac.denials import record_denial
from runs import memory, services, workflow_services
from runs.api.serializers import (
    AgentMemoryRemovedSerializer,
    AgentMemorySerializer,
    RunDetailSerializer,
    RunEventSerializer,
    RunRerunSerializer,
    RunSerializer,
    RunStartSerializer,
    WorkflowPublishSerializer,
    WorkflowSerializer,
    WorkflowUpdateSerializer,
    WorkflowValidateSerializer,
    WorkflowVersionSerializer,
)
from runs.engine.validation import validate_definition
from runs.engine.validation.schema import DEFINITION_SCHEMA
from runs.filtersets import RunEventFilterSet, RunFilterSet, WorkflowFilterSet
from runs.models import Run, RunEvent, Workflow, WorkflowVersion
from runs.selectors import registry_view, with_finished_steps

workflow_definition_schema = definition_schema_view("workflow", lambda: DEFINITION_SCHEMA)


class WorkflowViewSet(SlugLookupMixin, ServiceCreateMixin, TenantViewSet):
    """Workflows and their immutable versions."""

    model = Workflow
    serializer_class = WorkflowSerializer
    filterset_class = WorkflowFilterSet
    # never deleted: runs pin its versions; disabled with PATCH {"status": "disabled"}
    http_method_names = ["get", "post", "patch", "head", "options"]
    method_not_allowed_hints = {
        "DELETE": 'Workflows are disabled, not deleted: PATCH {"status": "disabled"}.'
    }
    action_permissions = {
        "publish": "runs.change_workflow",
        "versions": "runs.view_workflow",
        "validate": "runs.view_workflow",
    }
    create_service = workflow_services.workflow_create
    create_fields = ("slug", "name", "definition", "description", "tags", "note")
    records_creator = True

    def refine_queryset(self, queryset):
        return queryset.select_related("current_version")

    @extend_schema(request=WorkflowUpdateSerializer, responses=WorkflowSerializer)
    def partial_update(self, request, *args, **kwargs):
        workflow = self.get_object()
        data = self.validated(WorkflowUpdateSerializer)
        workflow = workflow_services.workflow_update(workflow=workflow, **data)
        return Response(WorkflowSerializer(workflow).data)

    @extend_schema(request=WorkflowPublishSerializer, responses={201: WorkflowVersionSerializer})
    @action(detail=True, methods=["post"])
    def publish(self, request, *args, **kwargs):
        """Validate and publish a new version of the definition."""
        workflow = self.get_object()
        data = self.validated(WorkflowPublishSerializer)
        version = workflow_services.workflow_publish(
            workflow=workflow, created_by=request.user, **data
        )
        return Response(WorkflowVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=WorkflowVersionSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)
    def versions(self, request, *args, **kwargs):
        """Every version, newest first."""
        workflow = self.get_object()
        versions = (
            WorkflowVersion.objects.filter(workflow=workflow)
            .select_related("workflow", "created_by")
            .order_by("-number")
        )
        return Response(WorkflowVersionSerializer(versions, many=True).data)

    @extend_schema(request=WorkflowValidateSerializer, responses=OpenApiTypes.OBJECT)
    @action(detail=False, methods=["post"])
    def validate(self, request, *args, **kwargs):
        """Check a definition without saving it: {"valid": bool, "errors": [{path, message}]}."""
        data = self.validated(WorkflowValidateSerializer)
        definition = data["definition"]
        if not isinstance(definition, dict):
            errors = [{"path": "", "message": "Give the definition as a JSON object."}]
        else:
            errors = [
                {"path": e.path, "message": e.message}
                for e in validate_definition(definition, registry_view(self.tenant))
            ]
        return Response({"valid": not errors, "errors": errors})


class IdempotencyKeyConflict(exceptions.APIException):
    status_code = 422
    default_code = "idempotency_key_reused"


class RunViewSet(TenantViewSet):
    """Runs: start (Idempotency-Key header), list, detail with steps, events, cancel, resume,
    rerun."""

    model = Run
    serializer_class = RunSerializer
    filterset_class = RunFilterSet
    lookup_value_regex = r"\d+"
    ordering = "-id"
    http_method_names = ["get", "post", "head", "options"]
    action_permissions = {
        "cancel": "runs.cancel_run",
        "resume": "runs.resume_run",
        "rerun": "runs.resume_run",
        "events": "runs.view_run",
    }

    def refine_queryset(self, queryset):
        return with_finished_steps(
            queryset.select_related("workflow", "workflow_version", "agent", "created_by")
        )

    def get_serializer_class(self):
        return RunDetailSerializer if self.action == "retrieve" else RunSerializer

    @extend_schema(
        request=RunStartSerializer,
        responses={
            201: RunDetailSerializer,
            200: RunDetailSerializer,
            422: OpenApiResponse(
                description="The Idempotency-Key already started a run with a different "
                "request (workflow, agent or input)."
            ),
        },
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="Repeat it on a retry with the same body: the first run is "
                "returned (200) instead of a second one. The same key with a different "
                "body is refused (422).",
            )
        ],
    )
    def create(self, request, *args, **kwargs):
        data = self.validated(RunStartSerializer)
        key = request.headers.get("Idempotency-Key", "").strip()
        if len(key) > 200:
            raise serializers.ValidationError({"Idempotency-Key": "Use at most 200 characters."})
        workflow = agent = None
        if data.get("workflow"):
            workflow = (
                Workflow.objects.filter(slug=data["workflow"])
                .select_related("current_version")
                .first()
            )
            if workflow is None:
                raise serializers.ValidationError(
                    {"workflow": f"No workflow {data['workflow']!r} in this tenant."}
                )
            if not self.access.has_perm("runs.run_workflow", workflow):
                record_denial(
                    request=request,
                    access=self.access,
                    permission="runs.run_workflow",
                    target=workflow,
                )
                self.permission_denied(request, message="You may not run this workflow.")
        else:
            agent = Agent.objects.filter(slug=data["agent"]).first()
            if agent is None:
                raise serializers.ValidationError(
                    {"agent": f"No agent {data['agent']!r} in this tenant."}
                )
            if not self.access.has_perm("agents.use_agent", agent):
                record_denial(
                    request=request, access=self.access, permission="agents.use_agent", target=agent
                )
                self.permission_denied(request, message="You may not use this agent.")
        try:
            run, created = services.run_start(
                tenant=self.tenant,
                input=data.get("input", {}),
                workflow=workflow,
                agent=agent,
                created_by=request.user,
                idempotency_key=key,
                deadline_seconds=data.get("deadline_seconds"),
                max_steps=data.get("max_steps"),
            )
        except services.IdempotencyKeyReused as exc:
            raise IdempotencyKeyConflict(str(exc)) from None
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        run = self.refine_queryset(Run.objects.filter(pk=run.pk)).get()
        return Response(RunDetailSerializer(run).data, status=code)

    @extend_schema(request=None, responses=RunSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, *args, **kwargs):
        """Cancel the run; running steps stop at their next check."""
        run = services.run_cancel(
            run=self.get_object(), reason=f"cancelled by {request.user.get_username()}"
        )
        return Response(RunSerializer(run).data)

    @extend_schema(request=None, responses=RunSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, *args, **kwargs):
        """Resume a failed run from its failed step, reusing earlier outputs."""
        run = services.run_resume(run=self.get_object())
        return Response(RunSerializer(run).data)

    @extend_schema(request=RunRerunSerializer, responses={201: RunSerializer})
    @action(detail=True, methods=["post"])
    def rerun(self, request, *args, **kwargs):
        """Start a new run of the same definition, with the same or an edited input, and the
        agent versions the run pinned (``versions: same``, default) or the current ones."""
        data = self.validated(RunRerunSerializer)
        rerun = services.run_rerun(
            run=self.get_object(),
            input=data.get("input"),
            created_by=request.user,
            versions=data["versions"],
        )
        return Response(RunSerializer(rerun).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        filters=False,
        parameters=[
            OpenApiParameter(
                "after",
                int,
                description="Only events after this seq (what a reconnecting client saw last).",
            ),
            OpenApiParameter(
                "type",
                str,
                description="Event types, comma-separated; one ending in '.' is a prefix "
                "(type=step. gives every step event).",
            ),
            OpenApiParameter("step", str, description="Only the events of this step."),
            OpenApiParameter("limit", int, description="At most this many (1-1000)."),
        ],
        responses=RunEventSerializer(many=True),
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def events(self, request, *args, **kwargs):
        """The run's events in order; ``after`` resumes from the last sequence number seen."""
        run = self.get_object()
        try:
            limit = min(1000, max(1, int(request.query_params.get("limit", 500))))
        except ValueError:
            raise serializers.ValidationError({"limit": "Give a whole number."}) from None
        events = RunEventFilterSet(
            request.query_params, queryset=RunEvent.objects.filter(run=run), request=request
        )
        if not events.is_valid():
            raise serializers.ValidationError(events.errors)
        return Response(RunEventSerializer(events.qs.order_by("seq")[:limit], many=True).data)

    def filter_queryset(self, queryset):
        # the run list's filters (status, workflow, ...) are not the events' filters
        if self.action == "events":
            return queryset
        return super().filter_queryset(queryset)


class AgentMemoryViewSet(TenantScopedViewMixin, viewsets.GenericViewSet):
    """An agent's long-term memory (what its ``memory_set`` tool stored): read, forget, clear.

    The agent is found in the URL's tenant (another tenant's is a 404); reading needs
    ``view_agent``, forgetting ``change_agent`` (a role or a grant on the agent).
    """

    model = Agent
    lookup_field = "slug"
    allow_object_grants = True
    serializer_class = AgentMemorySerializer
    action_permissions = {
        "list": "agents.view_agent",
        "clear": "agents.change_agent",
        "forget": "agents.change_agent",
    }

    @extend_schema(operation_id="agent_memory_list")
    def list(self, request, *args, **kwargs):
        """The agent's memory, by key."""
        entries = memory.agent_memory(self.get_object())
        page = self.paginate_queryset(entries)
        return self.get_paginated_response(AgentMemorySerializer(page, many=True).data)

    @extend_schema(
        operation_id="agent_memory_clear",
        request=None,
        responses={200: AgentMemoryRemovedSerializer},  # a DELETE that answers what it removed
    )
    def clear(self, request, *args, **kwargs):
        """Forget everything the agent remembers (audited as agent.memory.clear)."""
        removed = memory.agent_memory_clear(agent=self.get_object())
        return Response({"removed": removed})

    @extend_schema(
        operation_id="agent_memory_forget",
        request=None,
        responses={200: AgentMemoryRemovedSerializer},  # a DELETE that answers what it removed
    )
    def forget(self, request, *args, key: str = "", **kwargs):
        """Forget one key (audited as agent.memory.forget); 404 when the agent has no such key."""
        agent = self.get_object()
        removed = memory.agent_memory_clear(agent=agent, key=key)
        if not removed:
            raise exceptions.NotFound(f"Agent {agent.slug!r} remembers nothing under {key!r}.")
        return Response({"removed": removed})
