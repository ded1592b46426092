"""Secret pages: list and create, one secret (replace its value, delete)."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse

from agents.filtersets import SecretFilterSet
from agents.forms.secrets import SecretCreateForm, SecretUpdateForm
from agents.models import Secret
from agents.services.secrets import secret_create, secret_delete, secret_update
from controlplane.dashboard.entity_pages import EntityListPage, EntityObjectPage, EntityPages

SECRET_PAGES = EntityPages(
    model=Secret,
    noun="Secret",
    plural="secrets",
    url_name="secret",
    name_field="name",
    lookup_field="name",
    object_kwarg="secret",
)


class SecretListPage(EntityListPage):
    """Secret names and descriptions, and the form to add one; values are never shown."""

    entity = SECRET_PAGES
    actions = ("view", "add")
    template_name = "agents/secret_list.html"
    filterset_class = SecretFilterSet
    ordering = ("name",)

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["form"] = kwargs.get("form") or SecretCreateForm()
        return data

    def post(self, request, *args, **kwargs):
        def create(data: dict[str, Any]) -> HttpResponse:
            secret = secret_create(tenant=self.tenant, **data)
            return self.done(f"Secret “{secret.name}” stored. Its value is not shown again.")

        return self.submit(SecretCreateForm(request.POST), create, as_="form")


class SecretDetailPage(EntityObjectPage):
    entity = SECRET_PAGES
    template_name = "agents/secret_detail.html"
    context_object_name = "secret"

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["form"] = kwargs.get("form") or SecretUpdateForm(
            initial=SecretUpdateForm.initial_for(self.object)
        )
        data["can_delete"] = self.can("agents.delete_secret")
        return data

    def post(self, request, *args, **kwargs):
        secret = self.object
        if request.POST.get("op") == "delete":
            self.require("agents.delete_secret")
            secret_delete(secret=secret)
            return self.done(f"Secret “{secret.name}” deleted.", to=self.url("secrets"))

        def update(data: dict[str, Any]) -> HttpResponse:
            value = data["value"] or None
            secret_update(secret=secret, value=value, description=data["description"])
            changed = "value and description" if value else "description"
            return self.done(f"Secret “{secret.name}”: {changed} saved.")

        return self.submit(SecretUpdateForm(request.POST), update, as_="form")
