from django.urls import path

from controlplane.realtime.consumers import TenantEventsConsumer
from runs.consumers import RunEventsConsumer, RunListConsumer

websocket_urlpatterns = [
    path("ws/t/<slug:tenant>/events/", TenantEventsConsumer.as_asgi()),
    path("ws/t/<slug:tenant>/runs/", RunListConsumer.as_asgi()),
    path("ws/t/<slug:tenant>/runs/<int:run>/", RunEventsConsumer.as_asgi()),
]
