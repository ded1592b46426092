from django.urls import path

from controlplane.realtime.consumers import TenantEventsConsumer

websocket_urlpatterns = [
    path("ws/t/<slug:tenant>/events/", TenantEventsConsumer.as_asgi()),
]
