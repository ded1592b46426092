"""Serializers of model providers and of a connection check."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agents.choices import ProviderKind
from agents.models import ProviderConnection
from agents.providers import slots
from controlplane.api.fields import SLUG, TagsField


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
    slots_in_use = serializers.SerializerMethodField(
        help_text="Requests in flight to this provider now, across every worker "
        "(null when Redis cannot be reached to count them)."
    )
    simulated = serializers.SerializerMethodField(
        help_text="True for the offline simulator: its answers are not from a real model."
    )
    models = serializers.JSONField(
        required=False,
        help_text='[{"name": "gpt-4o-mini", "input_per_mtok": 0.15, "output_per_mtok": 0.6}] '
        "(USD per million tokens) or a list of model names.",
    )
    tags = TagsField(required=False)
    max_concurrency = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=10000,
        help_text=ProviderConnection._meta.get_field("max_concurrency").help_text,
        error_messages={
            "min_value": "Give at least 1: the most requests in flight at once to this provider.",
            "max_value": "Give at most 10000: the most requests in flight at once to this "
            "provider.",
        },
    )

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
            "max_concurrency",
            "slots_in_use",
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

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_slots_in_use(self, obj) -> int | None:
        try:
            return slots.in_use(obj.pk)
        except slots.ProviderSlotsUnavailable:
            return None

    def get_has_api_key(self, obj) -> bool:
        return bool(obj.api_key)

    def get_simulated(self, obj) -> bool:
        return obj.kind == ProviderKind.SIMULATED


class ConnectionCheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    message = serializers.CharField()
    latency_ms = serializers.FloatField()
    models = serializers.ListField(child=serializers.CharField())
