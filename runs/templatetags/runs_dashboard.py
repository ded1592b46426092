"""Template filters of the run pages: money, durations and status words."""

from __future__ import annotations

from typing import Any

from django import template

from runs import presenters
from runs.approvals.choices import ApprovalStatus
from runs.choices import RunStatus, StepStatus

register = template.Library()

STATUS_WORDS: dict[str, str] = {
    **dict(StepStatus.choices),
    **dict(RunStatus.choices),
    **dict(ApprovalStatus.choices),
    "not_started": "Not started",
}


@register.filter
def usd(value: Any) -> str:
    return presenters.usd(value)


@register.filter
def ms(value: Any) -> str:
    return presenters.milliseconds(value)


@register.simple_tag
def took(start: Any, end: Any) -> str:
    return presenters.duration(start, end)


@register.filter
def status_word(status: str) -> str:
    """What a status is called on the page (its icon comes from the ``status-*`` class)."""
    return STATUS_WORDS.get(status, str(status).replace("_", " ").capitalize())
