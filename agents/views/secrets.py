"""Secret pages: list and create, one secret (replace its value, delete)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect

from agents.filtersets import (
    SecretFilterSet,
)
from agents.forms.secrets import SecretCreateForm, SecretUpdateForm
from agents.models import (
    Secret,
)
from agents.services.secrets import secret_create, secret_delete, secret_update
from controlplane.dashboard.pages import (
    TenantListPage,
    TenantObjectPage,
)


class SecretListPage(TenantListPage):
    """Secret names and descriptions, and the form to add one; values are never shown."""

    template_name = "agents/secret_list.html"
    permission_required = "agents.view_secret"
    post_permission_required = "agents.add_secret"
    nav_section = "secrets"
    model = Secret
    filterset_class = SecretFilterSet
    add_permission = "agents.add_secret"

    def get_queryset(self):
        return Secret.objects.order_by("name")

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["form"] = kwargs.get("form") or SecretCreateForm()
        data["has_any"] = data["filtered"] or Secret.objects.exists()
        return data

    def post(self, request, *args, **kwargs):
        form = SecretCreateForm(request.POST)
        if not form.is_valid():
            return self.invalid(form=form)
        try:
            secret = secret_create(tenant=self.tenant, **form.cleaned_data)
        except ValidationError as exc:
            form.add_service_errors(exc)
            return self.invalid(form=form)
        messages.success(request, f"Secret “{secret.name}” stored. Its value is not shown again.")
        return redirect(request.path)


class SecretDetailPage(TenantObjectPage):
    template_name = "agents/secret_detail.html"
    permission_required = "agents.view_secret"
    post_permission_required = "agents.change_secret"
    nav_section = "secrets"
    model = Secret
    lookup_field = "name"

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["secret"] = self.object
        data["form"] = kwargs.get("form") or SecretUpdateForm(
            initial={"description": self.object.description}
        )
        data["can_delete"] = self.can("agents.delete_secret")
        return data

    def post(self, request, *args, **kwargs):
        secret = self.object
        if request.POST.get("op") == "delete":
            self.require("agents.delete_secret")
            secret_delete(secret=secret)
            messages.success(request, f"Secret “{secret.name}” deleted.")
            return redirect(self.url("secrets"))
        form = SecretUpdateForm(request.POST)
        if not form.is_valid():
            return self.invalid(form=form)
        try:
            secret_update(
                secret=secret,
                value=form.cleaned_data["value"] or None,
                description=form.cleaned_data["description"],
            )
        except ValidationError as exc:
            form.add_service_errors(exc)
            return self.invalid(form=form)
        changed = "value and description" if form.cleaned_data["value"] else "description"
        messages.success(request, f"Secret “{secret.name}”: {changed} saved.")
        return redirect(request.path)
