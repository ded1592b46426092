from django.apps import AppConfig

from controlplane import hooks


class PoliciesConfig(AppConfig):
    name = "policies"
    verbose_name = "Policies, approvals, limits, budgets"

    def ready(self) -> None:
        from policies.services import ensure_default_policy  # models load after the registry

        hooks.tenant_created.register(ensure_default_policy)
