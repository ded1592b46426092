"""The one permission class every tenant API view uses (installed by the base viewset)."""

from __future__ import annotations

from rest_framework import permissions

from controlplane.rbac.denials import record_denial


class TenantPermission(permissions.BasePermission):
    """Member of the URL's tenant (else 404) holding the action's permission (else 403)."""

    message = "Your role in this tenant does not allow this action."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        access = view.access  # resolves the tenant; 404 when the user is not a member
        perm = view.required_permission()
        if access.has_perm(perm):
            return True
        if view.allow_object_grants and view.is_object_action():
            return True  # decided per object in has_object_permission
        record_denial(request=request, access=access, permission=perm)
        return False

    def has_object_permission(self, request, view, obj) -> bool:
        access = view.access
        perm = view.required_permission()
        if access.has_perm(perm, obj):
            return True
        record_denial(request=request, access=access, permission=perm, target=obj)
        return False
