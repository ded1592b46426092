"""Membership roles mapped to model permissions inside a tenant.

The first RBAC layer: a role grants ``app_label.codename`` permissions for every
object of the tenant. The second layer (per-object grants) is django-guardian,
see ``controlplane.rbac.grants``. Apps extend these sets as they add models;
``tests/rbac`` checks every name here is a real Permission.
"""

from __future__ import annotations

from controlplane.tenancy.choices import Role

_REGISTRY_MODELS = (
    "agent",
    "agentversion",
    "tool",
    "toolgrant",
    "providerconnection",
    "mcpserver",
    "secret",
    "knowledgedocument",
    "ticket",
)

VIEWER_PERMISSIONS: frozenset[str] = frozenset(
    {
        "tenancy.view_tenant",
        "tenancy.view_membership",
        "audit.view_auditevent",
        *(f"agents.view_{model}" for model in _REGISTRY_MODELS),
        "runs.view_workflow",
        "runs.view_workflowversion",
        "runs.view_run",
        "runs.view_steprun",
        "runs.view_runevent",
        "runs.view_approvalrequest",
        "policies.view_policy",
        "policies.view_policyversion",
        "policies.view_policydecision",
    }
)

OPERATOR_PERMISSIONS: frozenset[str] = VIEWER_PERMISSIONS | frozenset(
    {
        "agents.use_agent",
        "agents.use_tool",
        "runs.add_run",
        "runs.cancel_run",
        "runs.resume_run",
        "runs.run_workflow",
    }
)

# Platform engineers: register and change agents, tools, providers, MCP servers, secrets.
REGISTRY_ADMIN_PERMISSIONS: frozenset[str] = frozenset(
    {
        "agents.add_agent",
        "agents.change_agent",
        "agents.add_tool",
        "agents.change_tool",
        "agents.add_toolgrant",
        "agents.delete_toolgrant",
        "agents.add_providerconnection",
        "agents.change_providerconnection",
        "agents.add_mcpserver",
        "agents.change_mcpserver",
        "agents.add_secret",
        "agents.change_secret",
        "agents.delete_secret",
        "runs.add_workflow",
        "runs.change_workflow",
        "agents.add_knowledgedocument",
        "agents.change_knowledgedocument",
        "agents.delete_knowledgedocument",
    }
)

# Security and compliance admins: write, activate, simulate and delete policies, and grant
# the per-policy "approve" right.
POLICY_ADMIN_PERMISSIONS: frozenset[str] = frozenset(
    {
        "policies.add_policy",
        "policies.change_policy",
        "policies.delete_policy",
        "policies.add_policyversion",
    }
)

# administering the tenant itself: members, invitations, API tokens
TENANT_ADMIN_PERMISSIONS: frozenset[str] = frozenset(
    {
        "tenancy.add_membership",
        "tenancy.change_membership",
        "tenancy.delete_membership",
        "tenancy.manage_members",
        "tenancy.view_invitation",
        "tenancy.delete_invitation",
        "api.view_apitoken",
        "api.add_apitoken",
        "api.delete_apitoken",
    }
)

ADMIN_PERMISSIONS: frozenset[str] = (
    OPERATOR_PERMISSIONS
    | REGISTRY_ADMIN_PERMISSIONS
    | POLICY_ADMIN_PERMISSIONS
    | TENANT_ADMIN_PERMISSIONS
)

OWNER_PERMISSIONS: frozenset[str] = ADMIN_PERMISSIONS | frozenset({"tenancy.change_tenant"})

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    Role.VIEWER: VIEWER_PERMISSIONS,
    Role.OPERATOR: OPERATOR_PERMISSIONS,
    Role.ADMIN: ADMIN_PERMISSIONS,
    Role.OWNER: OWNER_PERMISSIONS,
}

# Permissions an API token of scope "write" may not use: administering the
# tenant itself (members, tokens, settings) needs an "admin" token.
ADMINISTRATIVE_PERMISSIONS: frozenset[str] = TENANT_ADMIN_PERMISSIONS | frozenset(
    {"tenancy.change_tenant"}
)

ROLE_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2, Role.OWNER: 3}

SCOPE_RANK = {"read": 0, "write": 1, "admin": 2}

# The widest token scope a member with a role may hold. Viewers and operators get write, not
# read: a per-object grant (approve this policy, run this workflow) can let them make changes.
# Only admins and owners hold administrative permissions, so only they get admin.
ROLE_MAX_SCOPE = {
    Role.VIEWER: "write",
    Role.OPERATOR: "write",
    Role.ADMIN: "admin",
    Role.OWNER: "admin",
}


def role_permissions(role: str) -> frozenset[str]:
    return ROLE_PERMISSIONS.get(role, frozenset())


def scope_allows(scope: str, perm: str) -> bool:
    """Whether an API token of ``scope`` (read / write / admin) may use ``perm``."""
    codename = perm.split(".", 1)[-1]
    if scope == "admin":
        return True
    if perm in ADMINISTRATIVE_PERMISSIONS:  # e.g. api.view_apitoken: not for read either
        return False
    if scope == "write":
        return True
    return codename.startswith("view_")


def max_token_scope(role: str) -> str:
    """The widest scope a token of a member with ``role`` may have (read for unknown roles)."""
    return ROLE_MAX_SCOPE.get(role, "read")


def scope_needed(perm: str) -> str:
    """The narrowest token scope that allows ``perm``."""
    return next(scope for scope in ("read", "write", "admin") if scope_allows(scope, perm))
