"""Fields of the registry's serializers: write-only secret mappings (slugs and tags are
``controlplane.api.fields``)."""

from __future__ import annotations

from rest_framework import serializers


class SecretMapField(serializers.DictField):
    """Header or variable name -> secret value; accepted on write, never returned."""

    child = serializers.CharField(allow_blank=False, max_length=10000)
