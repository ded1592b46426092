"""API actions for objects with immutable numbered versions (agents, policies): one version,
and the diff between two. Knows no domain app: the viewset names its version model."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.response import Response


class DiffChangeSerializer(serializers.Serializer):
    """One change between two versions (one "DiffChange" in the schema, for every app)."""

    path = serializers.CharField()
    change = serializers.ChoiceField(choices=["added", "removed", "changed"])
    before = serializers.JSONField(allow_null=True)
    after = serializers.JSONField(allow_null=True)


class VersionDiffMixin:
    """Adds ``GET .../<slug>/versions/<number>/`` and ``GET .../<slug>/diff/?from=&to=``.

    The viewset declares ``version_model`` (its foreign key to the object is named after the
    object's model), ``version_serializer_class``, ``diff_default_to(obj)`` (the version
    ``to`` means when omitted) and ``diff_changes(older, newer)``, and documents both
    actions with its own serializers: ``@extend_schema_view(**version_diff_schema(...))``.
    """

    version_model: type[models.Model]
    version_serializer_class: type[serializers.Serializer]

    def diff_default_to(self, obj: Any) -> int | None:
        raise NotImplementedError

    def diff_changes(self, older: Any, newer: Any) -> list[dict[str, Any]]:
        raise NotImplementedError

    @property
    def _version_owner(self) -> str:
        return self.model._meta.model_name

    def version_queryset(self, obj: Any) -> models.QuerySet:
        """Every version of ``obj`` (unordered), with the object and the author loaded."""
        owner = self._version_owner
        return self.version_model.objects.filter(**{owner: obj}).select_related(owner, "created_by")

    @action(detail=True, methods=["get"], url_path=r"versions/(?P<number>\d+)")
    def version(self, request, *args, number=None, **kwargs):
        obj = self.get_object()
        version = self.version_queryset(obj).filter(number=int(number)).first()
        if version is None:
            raise Http404(f"{obj.slug} has no version {number}.")
        return Response(self.version_serializer_class(version).data)

    @action(detail=True, methods=["get"])
    def diff(self, request, *args, **kwargs):
        obj = self.get_object()
        numbers = {}
        for key, default in (("from", None), ("to", self.diff_default_to(obj))):
            raw = request.query_params.get(key, default)
            try:
                numbers[key] = int(raw)
            except (TypeError, ValueError):
                raise serializers.ValidationError(
                    {key: "Give a version number, e.g. ?from=1&to=2."}
                ) from None
        found = {
            v.number: v
            for v in self.version_model.objects.filter(
                **{self._version_owner: obj}, number__in=numbers.values()
            )
        }
        for key, number in numbers.items():
            if number not in found:
                raise serializers.ValidationError({key: f"{obj.slug} has no version {number}."})
        older, newer = found[numbers["from"]], found[numbers["to"]]
        return Response(
            {
                self._version_owner: obj.slug,
                "from_version": older.number,
                "to_version": newer.number,
                "changes": self.diff_changes(older, newer),
            }
        )


def version_diff_schema(
    *,
    noun: str,
    version_serializer: type[serializers.Serializer],
    diff_serializer: type[serializers.Serializer],
    to_default: str,
    diff_description: str,
) -> dict[str, Any]:
    """``extend_schema_view`` arguments documenting a viewset's ``version`` and ``diff``."""
    return {
        "version": extend_schema(
            responses=version_serializer, description=f"One version of the {noun}."
        ),
        "diff": extend_schema(
            parameters=[
                OpenApiParameter("from", int, required=True),
                OpenApiParameter(
                    "to", int, required=False, description=f"defaults to {to_default}"
                ),
            ],
            responses=diff_serializer,
            description=diff_description,
        ),
    }
