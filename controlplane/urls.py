"""The project's URL wiring: health checks, every route of the REST API (namespace ``api``,
each app's viewsets registered on one tenant router) and the dashboard (namespace
``dashboard``, each app's ``urls`` included by name). May import every app.
"""

from django.urls import include, path
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework.routers import SimpleRouter

from agents.api.urls import register as register_registry
from controlplane import health
from controlplane.api.schema_view import SchemaView
from controlplane.api.views import ApiTokenViewSet
from controlplane.audit.api.views import AuditEventViewSet
from controlplane.errors import handler_400, handler_404, handler_500
from controlplane.tenancy.api.views import InvitationViewSet, MembershipViewSet, MyTenantsView
from policies.api.views import (
    PolicyDecisionViewSet,
    PolicyViewSet,
    policy_definition_schema,
)
from runs.api.views import (
    AgentMemoryViewSet,
    RunViewSet,
    WorkflowViewSet,
    workflow_definition_schema,
)
from runs.approvals.api.views import ApprovalViewSet

tenant_router = SimpleRouter(trailing_slash=True)
tenant_router.register("members", MembershipViewSet, basename="member")
tenant_router.register("invitations", InvitationViewSet, basename="invitation")
tenant_router.register("tokens", ApiTokenViewSet, basename="token")
tenant_router.register("audit-events", AuditEventViewSet, basename="audit-event")
register_registry(tenant_router)
tenant_router.register("workflows", WorkflowViewSet, basename="workflow")
tenant_router.register("runs", RunViewSet, basename="run")
tenant_router.register("approvals", ApprovalViewSet, basename="approval")
tenant_router.register("policies", PolicyViewSet, basename="policy")
tenant_router.register("policy-decisions", PolicyDecisionViewSet, basename="policy-decision")

api_urlpatterns = [
    path("tenants/", MyTenantsView.as_view(), name="tenant-list"),
    path(
        "t/<slug:tenant>/agents/<slug:slug>/memory/",
        AgentMemoryViewSet.as_view({"get": "list", "delete": "clear"}),
        name="agent-memory",
    ),
    path(
        "t/<slug:tenant>/agents/<slug:slug>/memory/<path:key>/",
        AgentMemoryViewSet.as_view({"delete": "forget"}),
        name="agent-memory-key",
    ),
    path("t/<slug:tenant>/", include(tenant_router.urls)),
    path(
        "schemas/workflow-definition/",
        workflow_definition_schema,
        name="workflow-definition-schema",
    ),
    path(
        "schemas/policy-definition/",
        policy_definition_schema,
        name="policy-definition-schema",
    ),
    path("schema/", SchemaView.as_view(), name="schema"),
    # the split view serves its start-up script as a file, so the CSP needs no inline script
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api:schema"), name="redoc"),
]

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("api/v1/", include((api_urlpatterns, "api"))),
    path("", include("controlplane.dashboard.urls")),
]

handler400 = handler_400
handler404 = handler_404
handler500 = handler_500
