from rest_framework import serializers

from controlplane.audit.export import COLUMNS
from controlplane.audit.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = COLUMNS  # the API shows an event as the exports write it
        read_only_fields = fields
