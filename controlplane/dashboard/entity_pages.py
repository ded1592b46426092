"""The pages every registry entity has, declared once: list, create, one object, edit.

An ``EntityPages`` states what the pages of one kind of object share: its model, navigation
section, the noun of its messages, its URL names, and the services that create and update
it. A page subclass then declares only what is its own (template, form, extra context),
NetBox-style: its permissions come from the model and the page's kind (a list views, a
create page adds, an object page views and changes, an edit page changes), unless the page
names them. ``entity_urls`` gives the entity's URL patterns with the usual names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect
from django.urls import URLPattern, path

from controlplane.dashboard.forms import CreateOrEditForm
from controlplane.dashboard.pages import (
    FormPage,
    ObjectFormPage,
    OperationsMixin,
    TenantListPage,
    TenantObjectPage,
    operation,
)


@dataclasses.dataclass(frozen=True)
class EntityPages:
    """What the dashboard pages of one kind of object share."""

    model: type
    noun: str  # in messages: Agent “triage” saved.
    plural: str  # "agents": its URLs start agents/, its list is named so, and so is its section
    url_name: str  # "agent": its other pages are agent-detail, agent-edit, ...
    nav_section: str = ""  # the navigation's section, when not ``plural``
    name_field: str = "slug"  # the attribute messages name the object by
    lookup_field: str = "slug"  # the URL keyword of one object's page
    object_kwarg: str = ""  # the services' keyword for the object: agent_update(agent=...)
    create: Callable[..., Any] | None = None  # the <entity>_create service
    update: Callable[..., Any] | None = None  # the <entity>_update service
    select_related: tuple[str, ...] = ()
    object_grants: bool = False  # a per-object grant counts too, as in the API

    def __post_init__(self) -> None:
        if not self.nav_section:
            object.__setattr__(self, "nav_section", self.plural)

    def perm(self, action: str) -> str:
        """The model's permission for ``action`` (view, add, change, delete)."""
        meta = self.model._meta
        return f"{meta.app_label}.{action}_{meta.model_name}"

    def label(self, obj: Any) -> str:
        return f"{self.noun} “{getattr(obj, self.name_field)}”"

    def url_kwargs(self, obj: Any) -> dict[str, Any]:
        return {self.lookup_field: getattr(obj, self.lookup_field)}


class FromEntity:
    """A page attribute that is its ``entity``'s attribute of the same name."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, page: Any, owner: type | None = None) -> Any:
        return self if page is None else getattr(page.entity, self.name)


class EntityPageMixin:
    """Model, section, lookup and permissions of a page, taken from its ``entity``.

    ``actions`` are the permission actions for reading (GET) and for posting (None: the
    page takes no POST). A page that declares ``permission_required`` or
    ``post_permission_required`` itself keeps its own.
    """

    entity: ClassVar[EntityPages]
    actions: ClassVar[tuple[str, str | None]] = ("view", None)
    route: ClassVar[str]  # its place among the entity's URLs (``entity_urls``)

    model = FromEntity()
    nav_section = FromEntity()
    lookup_field = FromEntity()
    object_grants = FromEntity()

    @property
    def permission_required(self) -> str:
        return self.entity.perm(self.actions[0])

    @property
    def post_permission_required(self) -> str | None:
        write = self.actions[1]
        return self.entity.perm(write) if write else None

    def get_queryset(self):
        return self.entity.model.objects.select_related(*self.entity.select_related)


class EntityListPage(EntityPageMixin, TenantListPage):
    """The entity's list; ``ordering`` orders it (empty: the model's own order)."""

    route = "list"
    ordering: ClassVar[tuple[str, ...]] = ()

    @property
    def add_permission(self) -> str:
        return self.entity.perm("add")

    def get_queryset(self):
        queryset = super().get_queryset()
        return queryset.order_by(*self.ordering) if self.ordering else queryset


class EntityFormPage(EntityPageMixin, FormPage):
    """A form page of the entity: ``form_class`` built with ``get_form_kwargs``; a valid form
    goes to ``perform`` (a service), then a success message and the object's page."""

    form_class: ClassVar[type]
    creating: ClassVar[bool]
    success_message: ClassVar[str]  # formatted with ``label`` and ``object``

    def get_form_kwargs(self) -> dict[str, Any]:
        return {}

    def form_kwargs(self) -> dict[str, Any]:
        """``get_form_kwargs``, and ``creating`` for a form that serves both pages."""
        kwargs = self.get_form_kwargs()
        if issubclass(self.form_class, CreateOrEditForm):
            kwargs["creating"] = self.creating
        return kwargs

    def get_form(self, data=None):
        return self.form_class(data, **self.form_kwargs())

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["creating"] = self.creating
        return data

    def perform(self, form) -> Any:
        raise NotImplementedError

    def success_url(self, obj: Any) -> str:
        return self.url(f"{self.entity.url_name}-detail", **self.entity.url_kwargs(obj))

    def success_text(self, obj: Any, form) -> str:
        return self.success_message.format(label=self.entity.label(obj), object=obj)

    def save(self, form) -> HttpResponse:
        obj = self.perform(form)
        messages.success(self.request, self.success_text(obj, form))
        return redirect(self.success_url(obj))


class EntityCreatePage(EntityFormPage):
    """Create one object with the entity's ``create`` service (in this tenant)."""

    actions = ("add", "add")
    route = "create"
    creating = True
    records_creator: ClassVar[bool] = False  # the service takes ``created_by``

    def perform(self, form) -> Any:
        extra = {"created_by": self.request.user} if self.records_creator else {}
        return self.entity.create(tenant=self.tenant, **form.service_fields(), **extra)


class EntityEditPage(EntityFormPage, ObjectFormPage):
    """Edit one object with the entity's ``update`` service; the form starts from the
    object's values (write-only fields start blank)."""

    actions = ("change", "change")
    route = "edit"
    creating = False
    success_message = "{label} saved."

    def get_form(self, data=None):
        initial = self.form_class.initial_for(self.object)
        return self.form_class(data, initial=initial, **self.form_kwargs())

    def perform(self, form) -> Any:
        return self.entity.update(
            **{self.entity.object_kwarg: self.object}, **form.service_fields()
        )


class EntityObjectPage(EntityPageMixin, TenantObjectPage):
    """A page about one object of the entity: found in the tenant first."""

    actions = ("view", "change")
    route = "detail"


class EntityDetailPage(OperationsMixin, EntityObjectPage):
    """One object's page, whose forms post an ``op``; disabling and enabling it are here."""

    @operation("disable", "enable")
    def toggle(self, obj: Any) -> HttpResponse:
        return self.set_status(
            self.entity.update, self.entity.label(obj), **{self.entity.object_kwarg: obj}
        )


def entity_urls(*pages: type[EntityPageMixin]) -> list[URLPattern]:
    """URL patterns of an entity's pages, each placed by its ``route`` under ``<plural>/``.

    ``list`` is ``<plural>/`` named ``<plural>``; ``create`` is ``new/``; ``detail`` is the
    object's own URL (``<slug>/``, or ``<int:pk>/``); any other route is a page below it,
    ``<object>/<route>/``; each but the list is named ``<url_name>-<route>``.
    """
    routes: list[URLPattern] = []
    for page in pages:
        entity = page.entity
        key = "int" if entity.lookup_field == "pk" else "slug"
        obj = f"<{key}:{entity.lookup_field}>/"
        where = {"list": "", "create": "new/", "detail": obj}.get(page.route, f"{obj}{page.route}/")
        name = entity.plural if page.route == "list" else f"{entity.url_name}-{page.route}"
        routes.append(path(f"{entity.plural}/{where}", page.as_view(), name=name))
    return routes
