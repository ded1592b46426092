from rest_framework import serializers

from controlplane.audit.models import AuditEvent

EXPORT_FIELDS = [
    "seq",
    "created_at",
    "actor_type",
    "actor_name",
    "action",
    "target_type",
    "target_id",
    "target_name",
    "before",
    "after",
    "metadata",
    "request_id",
    "ip",
    "prev_hash",
    "hash",
]


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = EXPORT_FIELDS
        read_only_fields = fields
