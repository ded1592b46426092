"""The one permission class every tenant API view uses (installed by the base viewset)."""

from __future__ import annotations

import dataclasses

from rest_framework import permissions

from controlplane.rbac.denials import record_denial

READ_SCOPE_MESSAGE = (
    "A read-scope token can only read (GET, HEAD, OPTIONS). This request is a POST, PUT, "
    "PATCH or DELETE: use a token with scope write."
)


class TenantPermission(permissions.BasePermission):
    """Member of the URL's tenant (else 404) holding the action's permission (else 403).

    A read-scope token makes safe requests only: every other method is refused here,
    including POSTs that change nothing (``workflows/validate/``), so "read" means GET.
    The 403 says whether the role or the token's scope is the reason.
    """

    message = "Your role in this tenant does not allow this action."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        access = view.access  # resolves the tenant; 404 when the user is not a member
        perm = view.required_permission()
        if access.token_scope == "read" and request.method not in permissions.SAFE_METHODS:
            by_role = dataclasses.replace(access, token_scope=None).has_perm(perm)
            if by_role or (view.allow_object_grants and view.is_object_action()):
                self.message = READ_SCOPE_MESSAGE
                record_denial(request=request, access=access, permission=perm, reason="token_scope")
            else:  # the role refuses it anyway: say so, a wider token would not help
                record_denial(request=request, access=access, permission=perm, reason="role")
            return False
        if access.has_perm(perm):
            return True
        if view.allow_object_grants and view.is_object_action():
            return True  # decided per object in has_object_permission
        self._refuse(request, access, perm)
        return False

    def has_object_permission(self, request, view, obj) -> bool:
        access = view.access
        perm = view.required_permission()
        if access.has_perm(perm, obj):
            return True
        self._refuse(request, access, perm, obj)
        return False

    def _refuse(self, request, access, perm: str, obj=None) -> None:
        self.message = access.refusal_message(perm, obj)
        reason = "token_scope" if access.refused_by_scope(perm, obj) else "role"
        record_denial(request=request, access=access, permission=perm, target=obj, reason=reason)
