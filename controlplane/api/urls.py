"""Every route of the REST API. Apps contribute their routers here."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from agents.api.urls import register as register_registry
from controlplane.api.views import ApiTokenViewSet
from controlplane.audit.api.views import AuditEventViewSet
from controlplane.tenancy.api.views import MembershipViewSet, MyTenantsView

tenant_router = SimpleRouter(trailing_slash=True)
tenant_router.register("members", MembershipViewSet, basename="member")
tenant_router.register("tokens", ApiTokenViewSet, basename="token")
tenant_router.register("audit-events", AuditEventViewSet, basename="audit-event")
register_registry(tenant_router)

app_name = "api"
urlpatterns = [
    path("tenants/", MyTenantsView.as_view(), name="tenant-list"),
    path("t/<slug:tenant>/", include(tenant_router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api:schema"), name="redoc"),
]
