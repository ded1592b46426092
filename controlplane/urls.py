from django.urls import include, path

from controlplane import health
from controlplane.errors import handler_400, handler_404, handler_500

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("api/v1/", include("controlplane.api.urls")),
    path("", include("controlplane.dashboard.urls")),
]

handler400 = handler_400
handler404 = handler_404
handler500 = handler_500
