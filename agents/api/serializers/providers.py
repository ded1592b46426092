"""Serializers of model providers and of a connection check."""

from __future__ import annotations

from rest_framework import serializers

from agents.api.serializers.fields import SLUG, TagsField
from agents.choices import ProviderKind
from agents.models import ProviderConnection


class ProviderSerializer(serializers.ModelSerializer):
    slug = serializers.CharField(**SLUG)
    kind = serializers.ChoiceField(choices=ProviderKind.choices)
    api_key = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=5000,
        help_text='Write-only. Omit on update to keep the stored key; send "" to clear it.',
    )
    has_api_key = serializers.SerializerMethodField()
    simulated = serializers.SerializerMethodField(
        help_text="True for the offline simulator: its answers are not from a real model."
    )
    models = serializers.JSONField(
        required=False,
        help_text='[{"name": "gpt-4o-mini", "input_per_mtok": 0.15, "output_per_mtok": 0.6}] '
        "(USD per million tokens) or a list of model names.",
    )
    tags = TagsField(required=False)

    class Meta:
        model = ProviderConnection
        fields = [
            "slug",
            "name",
            "description",
            "kind",
            "simulated",
            "base_url",
            "api_key",
            "has_api_key",
            "api_key_env",
            "models",
            "timeout_seconds",
            "tags",
            "status",
            "last_test_at",
            "last_test_ok",
            "last_test_message",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "last_test_at",
            "last_test_ok",
            "last_test_message",
            "created_at",
            "updated_at",
        ]

    def get_has_api_key(self, obj) -> bool:
        return bool(obj.api_key)

    def get_simulated(self, obj) -> bool:
        return obj.kind == ProviderKind.SIMULATED


class ConnectionCheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    message = serializers.CharField()
    latency_ms = serializers.FloatField()
    models = serializers.ListField(child=serializers.CharField())
