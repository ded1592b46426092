from django.apps import AppConfig


class RbacConfig(AppConfig):
    name = "controlplane.rbac"
    label = "rbac"
