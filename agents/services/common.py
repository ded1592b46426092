"""Checks shared by the registry services: model validation, one-shot error lists, slugs."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError


def full_clean(obj: Any, exclude: list[str] | None = None) -> None:
    obj.full_clean(
        exclude=["tenant", *(exclude or [])], validate_unique=False, validate_constraints=False
    )


def all_problems(*checks: Any) -> None:
    """Run every check; raise one ValidationError with all their errors (none: return)."""
    errors: dict[str, list[str]] = {}
    for check in checks:
        try:
            check()
        except ValidationError as exc:
            found = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
            for field, messages in found.items():
                errors.setdefault(field, []).extend(messages)
    if errors:
        raise ValidationError(errors)


def unique_slug(model: type, tenant: Any, slug: str, exclude_pk: Any = None) -> None:
    existing = model.objects.for_tenant(tenant).filter(slug=slug)
    if exclude_pk is not None:
        existing = existing.exclude(pk=exclude_pk)
    if existing.exists():
        raise ValidationError(
            {
                "slug": f"{model._meta.verbose_name.capitalize()} {slug!r} "
                "already exists in this tenant."
            }
        )
