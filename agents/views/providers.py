"""Model provider pages: list, register, one provider (test its connection), edit."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect

from agents.choices import ProviderKind
from agents.filtersets import ProviderFilterSet
from agents.forms.providers import ProviderForm
from agents.models import ProviderConnection
from agents.providers import slots
from agents.providers.base import get_adapter
from agents.services.providers import provider_create, provider_record_test, provider_update
from controlplane.dashboard.entity_pages import (
    EntityCreatePage,
    EntityDetailPage,
    EntityEditPage,
    EntityListPage,
    EntityPages,
)
from controlplane.dashboard.pages import operation

PROVIDER_PAGES = EntityPages(
    model=ProviderConnection,
    noun="Provider",
    plural="providers",
    url_name="provider",
    object_kwarg="provider",
    create=provider_create,
    update=provider_update,
)


class ProviderListPage(EntityListPage):
    entity = PROVIDER_PAGES
    template_name = "agents/provider_list.html"
    filterset_class = ProviderFilterSet


class ProviderCreatePage(EntityCreatePage):
    entity = PROVIDER_PAGES
    template_name = "agents/provider_form.html"
    form_class = ProviderForm
    success_message = "{label} registered. Test the connection next."

    def get_form_kwargs(self) -> dict[str, Any]:
        models = [{"name": "sim-1", "input_per_mtok": 0, "output_per_mtok": 0}]
        return {"initial": {"kind": ProviderKind.SIMULATED, "models": models}}


def _slots_in_use(provider: ProviderConnection) -> int | None:
    """Slots held now across every worker; None when Redis cannot be reached to count them."""
    try:
        return slots.in_use(provider.pk)
    except slots.ProviderSlotsUnavailable:
        return None


class ProviderDetailPage(EntityDetailPage):
    entity = PROVIDER_PAGES
    template_name = "agents/provider_detail.html"
    context_object_name = "provider"

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        provider = self.object
        data.update(
            simulated=provider.kind == ProviderKind.SIMULATED,
            has_key=bool(provider.api_key),
            slots_in_use=_slots_in_use(provider),
            check=kwargs.get("check"),
        )
        return data

    @operation("test")
    def test(self, provider: ProviderConnection) -> HttpResponse:
        request = self.request
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


class ProviderEditPage(EntityEditPage):
    entity = PROVIDER_PAGES
    template_name = "agents/provider_form.html"
    form_class = ProviderForm
    context_object_name = "provider"

    def get_form_kwargs(self) -> dict[str, Any]:
        return {"has_key": bool(self.object.api_key)}
