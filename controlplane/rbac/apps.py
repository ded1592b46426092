from django.apps import AppConfig


class RbacConfig(AppConfig):
    name = "controlplane.rbac"
    label = "rbac"

    def ready(self):
        from controlplane.rbac.grants import connect_grant_cleanup

        connect_grant_cleanup()
