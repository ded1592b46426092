"""Model provider pages: list, register, one provider (test its connection), edit."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect

from agents.choices import ProviderKind
from agents.filtersets import (
    ProviderFilterSet,
)
from agents.forms.providers import ProviderForm
from agents.models import (
    ProviderConnection,
)
from agents.providers.base import get_adapter
from agents.services.providers import provider_create, provider_record_test, provider_update
from controlplane.dashboard.pages import (
    FormPage,
    ObjectFormPage,
    TenantListPage,
    TenantObjectPage,
)


class ProviderListPage(TenantListPage):
    template_name = "agents/provider_list.html"
    permission_required = "agents.view_providerconnection"
    nav_section = "providers"
    model = ProviderConnection
    filterset_class = ProviderFilterSet
    add_permission = "agents.add_providerconnection"

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["has_any"] = data["filtered"] or ProviderConnection.objects.exists()
        return data


class ProviderCreatePage(FormPage):
    template_name = "agents/provider_form.html"
    permission_required = "agents.add_providerconnection"
    post_permission_required = "agents.add_providerconnection"
    nav_section = "providers"

    def get_form(self, data=None):
        return ProviderForm(
            data,
            creating=True,
            initial={
                "kind": ProviderKind.SIMULATED,
                "models": [{"name": "sim-1", "input_per_mtok": 0, "output_per_mtok": 0}],
            },
        )

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["creating"] = True
        return data

    def save(self, form):
        data = form.service_fields(creating=True)
        provider = provider_create(
            tenant=self.tenant,
            slug=data.pop("slug"),
            name=data.pop("name"),
            kind=data.pop("kind"),
            **data,
        )
        messages.success(
            self.request, f"Provider “{provider.slug}” registered. Test the connection next."
        )
        return redirect(self.url("provider-detail", slug=provider.slug))


class ProviderDetailPage(TenantObjectPage):
    template_name = "agents/provider_detail.html"
    permission_required = "agents.view_providerconnection"
    post_permission_required = "agents.change_providerconnection"
    nav_section = "providers"
    model = ProviderConnection

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        provider = self.object
        data.update(
            provider=provider,
            simulated=provider.kind == ProviderKind.SIMULATED,
            has_key=bool(provider.api_key),
            check=kwargs.get("check"),
        )
        return data

    def post(self, request, *args, **kwargs):
        op = request.POST.get("op", "")
        provider = self.object
        if op in ("disable", "enable"):
            return self.set_status(
                provider_update, f"Provider “{provider.slug}”", provider=provider
            )
        if op != "test":
            messages.error(request, "Unknown action.")
            return redirect(request.path)
        check = get_adapter(provider).test_connection()
        provider = provider_record_test(
            provider=provider, ok=check.ok, message=check.message, latency_ms=check.latency_ms
        )
        if request.htmx:
            return self.response_class(
                request=request,
                template="agents/_provider_test.html",
                context={
                    "tenant": self.tenant,
                    "provider": provider,
                    "check": check,
                    "can_change": True,
                },
            )
        if check.ok:
            messages.success(request, f"Connection works: {check.message}")
        else:
            messages.error(request, f"Connection failed: {check.message}")
        return redirect(f"{request.path}#connection-test")


class ProviderEditPage(ObjectFormPage):
    template_name = "agents/provider_form.html"
    permission_required = "agents.change_providerconnection"
    post_permission_required = "agents.change_providerconnection"
    nav_section = "providers"
    model = ProviderConnection

    def get_form(self, data=None):
        provider = self.object
        fields = [
            "slug",
            "name",
            "description",
            "kind",
            "base_url",
            "api_key_env",
            "models",
            "timeout_seconds",
            "tags",
        ]
        return ProviderForm(
            data,
            creating=False,
            has_key=bool(provider.api_key),
            initial={name: getattr(provider, name) for name in fields},
        )

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data.update(creating=False, provider=self.object)
        return data

    def save(self, form):
        provider = provider_update(provider=self.object, **form.service_fields(creating=False))
        messages.success(self.request, f"Provider “{provider.slug}” saved.")
        return redirect(self.url("provider-detail", slug=provider.slug))
