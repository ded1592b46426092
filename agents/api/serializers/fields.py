"""Fields shared by the registry's serializers: slugs, tags, write-only secret mappings."""

from __future__ import annotations

from rest_framework import serializers

from controlplane.tenancy.models import slug_validator

SLUG = {"max_length": 50, "validators": [slug_validator]}


class TagsField(serializers.ListField):
    child = serializers.CharField(max_length=50)


class SecretMapField(serializers.DictField):
    """Header or variable name -> secret value; accepted on write, never returned."""

    child = serializers.CharField(allow_blank=False, max_length=10000)
