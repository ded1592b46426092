"""Serializers of secrets: the value is write-only."""

from __future__ import annotations

from rest_framework import serializers

from agents.models import Secret
from controlplane.tenancy.models import slug_validator


class SecretSerializer(serializers.ModelSerializer):
    value = serializers.CharField(
        write_only=True,
        max_length=20000,
        trim_whitespace=False,
        help_text="The secret itself; stored encrypted, never returned.",
    )

    class Meta:
        model = Secret
        fields = ["name", "description", "value", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]
        extra_kwargs = {"name": {"validators": [slug_validator]}}


class SecretUpdateSerializer(serializers.Serializer):
    value = serializers.CharField(required=False, max_length=20000, trim_whitespace=False)
    description = serializers.CharField(required=False, allow_blank=True)
