from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "controlplane.api"
    label = "api"

    def ready(self):
        from controlplane.api import schema  # noqa: F401
