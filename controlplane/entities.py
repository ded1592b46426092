"""Audited writes of a tenant's entities, the one home of what every registry service repeats.

An ``Entity`` names a model, the noun of its audit actions (``agent`` -> ``agent.update``)
and the fields its audit rows show. Its methods do the shared steps: refuse a slug taken in
the tenant, validate, save, lock and edit, delete, and record the audit event in the
caller's transaction. ``add_version`` stores the next immutable version of an agent, a
policy or a workflow. Callers are services (atomic, keyword-only); the domain checks stay
with them and are passed in. Knows no domain app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Max
from django.utils import timezone

from controlplane.audit.services import audit_record, snapshot


def full_clean(obj: models.Model, exclude: Iterable[str] = ()) -> None:
    """Field validation only: the tenant is set by the service, uniqueness checked apart."""
    obj.full_clean(exclude=["tenant", *exclude], validate_unique=False, validate_constraints=False)


def all_problems(*checks: Callable[[], Any]) -> None:
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


def raise_at_paths(errors: Iterable[Any], *, under: str) -> None:
    """Raise one ValidationError keyed ``<under>.<path>`` per error (``.path``, ``.message``).

    Definition validators (policies, workflows) report problems with a dotted path; a form
    or an API answer shows each next to the part of the definition it is about.
    """
    grouped: dict[str, list[str]] = {}
    for error in errors:
        grouped.setdefault(f"{under}.{error.path}" if error.path else under, []).append(
            error.message
        )
    if grouped:
        raise ValidationError(grouped)


def unique_slug(model: type[models.Model], tenant: Any, slug: str, exclude_pk: Any = None) -> None:
    """Refuse ``slug`` when another row of ``model`` in ``tenant`` (object or id) has it."""
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


@dataclass(frozen=True)
class Entity:
    """How services write one model: its audit noun, audited fields and validation.

    ``keep_when_none`` names secret fields for which an edit's ``None`` keeps the stored
    value; ``clean_exclude`` the fields ``full_clean`` leaves to the service.
    """

    model: type[models.Model]
    noun: str
    fields: tuple[str, ...]
    clean_exclude: tuple[str, ...] = ()
    keep_when_none: tuple[str, ...] = ()

    def snapshot(self, obj: models.Model, **extra: Any) -> dict[str, Any]:
        """The audited fields of ``obj`` as JSON, with ``extra`` keys added."""
        return {**snapshot(obj, list(self.fields)), **extra}

    def new(self, **fields: Any) -> models.Model:
        """An unsaved row; a field given as None takes the model's default."""
        return self.model(**{name: value for name, value in fields.items() if value is not None})

    def clean(self, obj: models.Model) -> None:
        full_clean(obj, exclude=self.clean_exclude)

    def check_slug(self, obj: models.Model, slug: str) -> None:
        """Refuse ``slug`` for ``obj`` when another row of its tenant has it."""
        unique_slug(self.model, obj.tenant_id, slug, exclude_pk=obj.pk)

    def record(self, verb: str, obj: models.Model, **fields: Any) -> None:
        """Append ``<noun>.<verb>`` about ``obj`` to its tenant's audit chain."""
        audit_record(action=f"{self.noun}.{verb}", target=obj, tenant=obj.tenant, **fields)

    def create(
        self,
        obj: models.Model,
        *,
        check: Callable[[models.Model], None] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> models.Model:
        """Validate (a free slug, then ``check`` or field validation), save, audit."""
        if "slug" in self.fields:
            self.check_slug(obj, obj.slug)
        (check or self.clean)(obj)
        obj.save()
        self.record("create", obj, after=self.snapshot(obj), metadata=metadata)
        return obj

    def update(
        self,
        obj: models.Model,
        changes: dict[str, Any],
        *,
        check: Callable[[models.Model], None] | None = None,
        prepare: Callable[[models.Model, dict[str, Any]], None] | None = None,
        metadata: dict[str, Any] | None = None,
        audit_unchanged: bool = True,
    ) -> models.Model:
        """Lock ``obj``, apply ``changes``, validate, save and audit before and after.

        ``prepare(locked, changes)`` runs after the before-snapshot and may refuse or
        rewrite changes; a new slug must be free; ``check`` (default: field validation)
        sees the edited object. Returns the locked, saved row.
        """
        obj = self.model.objects.select_for_update().get(pk=obj.pk)
        before = self.snapshot(obj)
        if prepare is not None:
            prepare(obj, changes)
        for field, value in changes.items():
            if field in self.keep_when_none and value is None:
                continue
            if field == "slug" and value != obj.slug:
                self.check_slug(obj, value)
            setattr(obj, field, value)
        (check or self.clean)(obj)
        obj.save()
        after = self.snapshot(obj)
        if audit_unchanged or after != before:
            self.record("update", obj, before=before, after=after, metadata=metadata)
        return obj

    def delete(self, obj: models.Model, *, before: dict[str, Any] | None = None) -> None:
        """Audit (``before``, default the audited fields), then delete ``obj``."""
        self.record("delete", obj, before=self.snapshot(obj) if before is None else before)
        obj.delete()


def add_version(
    version_model: type[models.Model],
    *,
    owner_field: str,
    owner: models.Model,
    current_field: str = "",
    **fields: Any,
) -> models.Model:
    """Store ``owner``'s next immutable version (its number is the last one's plus one).

    With ``current_field``, the owner's pointer to its current version moves to it. Call in
    a transaction holding the owner's row lock, so two publishers cannot take one number.
    """
    versions = version_model.objects.filter(**{owner_field: owner})
    last = versions.aggregate(n=Max("number"))["n"] or 0
    version = version_model.objects.create(
        tenant_id=owner.tenant_id, number=last + 1, **{owner_field: owner}, **fields
    )
    if current_field:
        type(owner).objects.filter(pk=owner.pk).update(
            **{current_field: version, "updated_at": timezone.now()}
        )
        setattr(owner, current_field, version)
    return version
