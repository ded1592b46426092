"""The base of every tenant page: subclasses declare a permission, the base enforces it.

``TenantPageMixin.dispatch`` resolves the tenant from the URL (404 for a
tenant the user is not in), sets the tenant context, and checks the page's
permission for the HTTP method (403, audited, when missing). A subclass that
declares no permission is refused at request time.
"""

from __future__ import annotations

import dataclasses

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.views import View

from controlplane import context
from controlplane.rbac.access import resolve_access
from controlplane.rbac.denials import record_denial

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class TenantPageMixin(LoginRequiredMixin):
    """Tenant resolution, context and permission enforcement for dashboard views."""

    permission_required: str | None = None  # for GET/HEAD
    post_permission_required: str | None = None  # for POST (defaults to refusing POST)
    tenant_url_kwarg = "tenant"

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        self.access = resolve_access(user=request.user, tenant_slug=kwargs[self.tenant_url_kwarg])
        self.tenant = self.access.tenant
        request.session["tenant"] = self.tenant.slug
        if request.method.lower() not in self.http_method_names or not hasattr(
            self, request.method.lower()
        ):
            return self.http_method_not_allowed(request, *args, **kwargs)
        perm = self.permission_for(request.method)
        ctx = dataclasses.replace(context.current(), tenant=self.tenant, user=request.user)
        token = context.set_context(ctx)
        try:
            if not self.access.has_perm(perm, self.get_permission_object()):
                record_denial(request=request, access=self.access, permission=perm)
                raise PermissionDenied("Your role in this tenant does not allow this.")
            return super().dispatch(request, *args, **kwargs)
        finally:
            context.reset_context(token)

    def permission_for(self, method: str) -> str:
        perm = self.permission_required if method in SAFE_METHODS else self.post_permission_required
        if perm is None:
            if method in SAFE_METHODS:
                raise ImproperlyConfigured(
                    f"{type(self).__name__} declares no permission_required."
                )
            return "__no_write_permission_declared__"
        return perm

    def get_permission_object(self):
        """The object whose per-object grants count too (None: role permissions only).

        Called with the tenant context set, after the tenant check: an object of another
        tenant is not found here, so it answers 404 before any permission is considered.
        """
        return None

    def can(self, perm: str, obj=None) -> bool:
        return self.access.has_perm(perm, obj)

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["tenant"] = self.tenant
        data["access"] = self.access
        data["perms_in_tenant"] = self.access.permissions
        return data


class TenantPage(TenantPageMixin, View):
    """A tenant page without a generic-view base."""
