"""Serializer fields that every app's API declares the same way."""

from __future__ import annotations

from rest_framework import serializers

from controlplane.choices import Status
from controlplane.tenancy.models import slug_validator

# a tenant-unique slug: serializers.CharField(**SLUG)
SLUG = {"max_length": 50, "validators": [slug_validator]}


class TagsField(serializers.ListField):
    """Free labels (e.g. "billing"), matched by the ``tag`` filters and grants."""

    child = serializers.CharField(max_length=50)


def optional_related(
    source: str, field_class: type[serializers.Field] = serializers.CharField
) -> serializers.Field:
    """The read-only value at ``source`` through a relation that may be empty (then null)."""
    return field_class(source=source, read_only=True, default=None, allow_null=True)


class ManagedFields(serializers.Serializer):
    """The tags and active/disabled status of a managed object (optional on write)."""

    tags = TagsField(required=False)
    status = serializers.ChoiceField(choices=Status.choices, required=False)


class VersionNoteField(serializers.CharField):
    """Why a version was made, shown in its history."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        super().__init__(allow_blank=True, max_length=300, **kwargs)


class MetadataUpdateSerializer(serializers.Serializer):
    """A PATCH of a versioned object's metadata: slug, name, description, and the subclass's.

    The versioned content (``versioned_field``) is refused with ``versioned_hint``, which
    says how it changes instead (a new version).
    """

    versioned_field = "definition"
    versioned_hint = ""

    slug = serializers.CharField(required=False, **SLUG)
    name = serializers.CharField(required=False, max_length=200)
    description = serializers.CharField(required=False, allow_blank=True)

    def validate(self, attrs):
        if self.versioned_field in self.initial_data:
            raise serializers.ValidationError({self.versioned_field: self.versioned_hint})
        return attrs


class PublishSerializer(serializers.Serializer):
    """A new version's content (the subclass's field) and the note saying why."""

    note = VersionNoteField()
