"""The navigation's count of pending approvals the member may decide."""

from __future__ import annotations

from typing import Any

from django import template

from runs.approvals.selectors import pending_for

register = template.Library()


@register.simple_tag
def pending_approvals(access: Any) -> int:
    """How many pending requests ``access`` may decide (0 without access)."""
    if access is None or not access.has_perm("runs.view_approvalrequest"):
        return 0
    return pending_for(access).count()
