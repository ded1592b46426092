"""Serializers of tickets (written by the ticket built-in tools)."""

from __future__ import annotations

from rest_framework import serializers

from agents.models import Ticket


class TicketSerializer(serializers.ModelSerializer):
    class Meta:
        model = Ticket
        fields = [
            "number",
            "title",
            "description",
            "status",
            "priority",
            "customer",
            "data",
            "idempotency_key",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
