from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "controlplane.audit"
    label = "audit"

    def ready(self):
        from controlplane.audit import signals  # noqa: F401
