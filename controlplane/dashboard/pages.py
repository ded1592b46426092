"""Base classes of dashboard pages: lists (filter, search, pagination), one-object pages
(found inside the tenant first), form pages and their helpers. Every page derives from
``TenantPageMixin`` through them, so tenant and permission checks are never skipped."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from functools import cached_property
from typing import Any, ClassVar, TypeVar

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.generic import TemplateView

from controlplane.choices import Status
from controlplane.dashboard.base import TenantPageMixin
from controlplane.dashboard.forms import VersionDiffForm
from controlplane.rbac.denials import record_denial

PAGE_SIZE = 50
F = TypeVar("F", bound=Callable[..., Any])


def int_or_zero(value: Any) -> int:
    """A posted number (an object's id); 0, which matches nothing, when it is not one."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


class KeysFirstPaginator(Paginator):
    """Pages of a big table: the page's primary keys first, then only the page's rows.

    A deep page (``?page=1000``) then skips rows inside an index (an index-only scan of
    keys) instead of reading and discarding every wide row before it. Two queries a page,
    whatever the page number.
    """

    def page(self, number):
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        keys = list(self.object_list.values_list("pk", flat=True)[bottom:top])
        rows = {obj.pk: obj for obj in self.object_list.filter(pk__in=keys)}
        return self._get_page([rows[k] for k in keys if k in rows], number, self)


# bases -------------------------------------------------------------------------------------


class TenantPage(TenantPageMixin, TemplateView):
    """A page inside a tenant: its navigation section, and helpers for actions and errors."""

    nav_section: ClassVar[str] = ""  # none: a page of the tenant itself (members, audit)

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["nav_section"] = self.nav_section
        return data

    def require(self, perm: str, obj: Any = None) -> None:
        """Refuse (403, audited) an action that needs more than the page's POST permission."""
        if not self.can(perm, obj):
            record_denial(request=self.request, access=self.access, permission=perm)
            raise PermissionDenied("Your role in this tenant does not allow this.")

    def invalid(self, **forms: Any) -> HttpResponse:
        """The page again with the forms' errors, answered 400."""
        return self.render_to_response(self.get_context_data(**forms), status=400)

    def url(self, name: str, **kwargs: Any) -> str:
        return reverse(f"dashboard:{name}", kwargs={"tenant": self.tenant.slug, **kwargs})

    def submit(self, form: Any, act: Callable[[dict[str, Any]], HttpResponse], *, as_: str):
        """``act(cleaned data)`` when ``form`` is valid; otherwise, or when the service it
        calls raises ``ValidationError``, the page again (400) with the errors in place,
        the form in the context as ``as_``."""
        if not form.is_valid():
            return self.invalid(**{as_: form})
        try:
            return act(form.cleaned_data)
        except ValidationError as exc:
            form.add_service_errors(exc)
            return self.invalid(**{as_: form})

    def refuse(self, text: str, anchor: str = "", *, to: str = "") -> HttpResponse:
        """Back to this page, at ``#anchor`` (or on to ``to``), with ``text`` as an error."""
        messages.error(self.request, text)
        return self.back(anchor, to)

    def done(self, text: str, anchor: str = "", *, to: str = "") -> HttpResponse:
        """Back to this page, at ``#anchor`` (or on to ``to``), with ``text`` as a success."""
        messages.success(self.request, text)
        return self.back(anchor, to)

    def back(self, anchor: str = "", to: str = "") -> HttpResponse:
        url = to or self.request.path
        return redirect(f"{url}#{anchor}" if anchor else url)


class TenantListPage(TenantPage):
    """A filtered, searchable, paginated list; GET only."""

    model: ClassVar[type]
    filterset_class: ClassVar[type]
    add_permission: ClassVar[str | None] = None
    paginator_class: ClassVar[type[Paginator]] = Paginator

    def get_queryset(self):
        return self.model.objects.all()

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        filterset = self.filterset_class(self.request.GET, queryset=self.get_queryset())
        objects = filterset.qs if filterset.is_valid() else self.model.objects.none()
        page = self.paginator_class(objects, PAGE_SIZE).get_page(self.request.GET.get("page"))
        query = self.request.GET.copy()
        query.pop("page", None)
        data.update(
            filterset=filterset,
            page_obj=page,
            objects=page.object_list,
            filtered=any(value for value in query.values()),
            query=query.urlencode(),
            can_add=bool(self.add_permission) and self.can(self.add_permission),
        )
        # an empty list says "none yet" only when nothing is there at all, not when filtered
        data["has_any"] = data["filtered"] or self.model.objects.exists()
        return data


def totals_by(queryset: Any, key: str, aggregate: Any) -> dict[Any, Any]:
    """``{key value: aggregate}`` over ``queryset`` in one GROUP BY (runs per workflow, ...)."""
    return dict(queryset.order_by().values(key).annotate(n=aggregate).values_list(key, "n"))


def versions_of(obj: Any, version_model: type, limit: int | None = None) -> list[Any]:
    """``obj``'s versions (an agent's, a workflow's, a policy's), newest first."""
    versions = (
        version_model.objects.filter(**{obj._meta.model_name: obj})
        .select_related("created_by")
        .order_by("-number")
    )
    return list(versions[:limit] if limit else versions)


def next_number(versions: list[Any]) -> int:
    """The number the next version of newest-first ``versions`` will get."""
    return (versions[0].number + 1) if versions else 1


def version_diff_context(
    request: Any, versions: list[Any], initial: dict[str, Any], differ: Any
) -> dict[str, Any]:
    """The version-diff form (``?from=N&to=M``) and, when asked, the changes ``differ``
    (older, newer) finds between the two versions, with values pretty-printed."""
    numbers = [v.number for v in versions]
    asked = "from" in request.GET or "to" in request.GET
    form = VersionDiffForm(request.GET if asked else None, numbers=numbers, initial=initial)
    if not asked or not form.is_valid():
        return {"diff_form": form}
    found = {v.number: v for v in versions}
    older, newer = found[form.cleaned_data["from"]], found[form.cleaned_data["to"]]
    return {
        "diff_form": form,
        "diff": {
            "from": older.number,
            "to": newer.number,
            "changes": [
                {**c, "before": pretty(c["before"]), "after": pretty(c["after"])}
                for c in differ(older, newer)
            ],
        },
    }


@dataclasses.dataclass(frozen=True)
class Operation:
    """What a posted ``op`` runs: the page's ``handler`` method, after ``permission``."""

    handler: str
    permission: str | None = None


def operation(*names: str, permission: str | None = None) -> Callable[[F], F]:
    """Make a page method the handler of the posted ``op`` values ``names``.

    ``permission``, when given, is needed on top of the page's POST permission: without
    it the action is refused (403, audited) before the handler runs.
    """

    def mark(method: F) -> F:
        method.page_operation = (names, permission)  # type: ignore[attr-defined]
        return method

    return mark


class OperationsMixin:
    """An object page whose forms post an ``op``, each handled by a method marked ``@operation``.

    ``operations`` (op -> ``Operation``) is collected from the class and its bases.
    """

    operations: ClassVar[dict[str, Operation]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, Operation] = {}
        for klass in reversed(cls.__mro__):
            for attribute, value in vars(klass).items():
                names, permission = getattr(value, "page_operation", ((), None))
                for name in names:
                    found[name] = Operation(attribute, permission)
        cls.operations = found

    def post(self, request, *args, **kwargs):
        found = self.operations.get(request.POST.get("op", ""))
        if found is None:
            return self.refuse("Unknown action.")
        if found.permission:
            self.require(found.permission)
        return getattr(self, found.handler)(self.object)


class TenantObjectPage(TenantPage):
    """A page about one object, found by ``lookup_field`` inside the tenant."""

    model: ClassVar[type]
    lookup_field: ClassVar[str] = "slug"
    object_grants: ClassVar[bool] = False  # a guardian grant on the object also counts
    context_object_name: ClassVar[str | None] = None  # the object's name in the template too

    def get_queryset(self):
        return self.model.objects.all()

    @cached_property
    def object(self):
        return get_object_or_404(
            self.get_queryset(), **{self.lookup_field: self.kwargs[self.lookup_field]}
        )

    def get_permission_object(self):
        obj = self.object  # first: a missing or foreign object is a 404 for every role
        return obj if self.object_grants else None

    def can_change(self) -> bool:
        return self.can(self.post_permission_required, self.object if self.object_grants else None)

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["object"] = self.object
        if self.context_object_name:
            data[self.context_object_name] = self.object
        data["can_change"] = self.can_change()
        return data

    def set_status(self, update, label: str, **target: Any) -> HttpResponse:
        """The disable / enable actions every registry object (agent, tool, workflow, ...) has."""
        op = self.request.POST.get("op")
        status = Status.DISABLED if op == "disable" else Status.ACTIVE
        try:
            update(**target, status=status)
        except ValidationError as exc:
            return self.refuse(f"{label} was not changed: {' '.join(exc.messages)}")
        verb = "disabled" if status == Status.DISABLED else "enabled again"
        return self.done(f"{label} {verb}.")


class FormPage(TenantPage):
    """Create or edit through one form; subclasses build the form and call the service."""

    def get_form(self, data=None):
        raise NotImplementedError

    def save(self, form) -> HttpResponse:
        raise NotImplementedError

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["form"] = kwargs.get("form") or self.get_form()
        return data

    def post(self, request, *args, **kwargs):
        form = self.get_form(request.POST)
        return self.submit(form, lambda _: self.save(form), as_="form")


class ObjectFormPage(FormPage, TenantObjectPage):
    """Edit one object (found in the tenant first)."""
