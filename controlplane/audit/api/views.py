from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.decorators import action

from controlplane.api.base import TenantReadOnlyViewSet
from controlplane.audit.api.serializers import AuditEventSerializer
from controlplane.audit.export import export_csv, export_jsonl
from controlplane.audit.filtersets import AuditEventFilterSet
from controlplane.audit.models import AuditEvent
from controlplane.audit.services import audit_record

EXPORT_FORMATS = {
    "jsonl": (export_jsonl, "application/x-ndjson"),
    "csv": (export_csv, "text/csv; charset=utf-8"),
}


class AuditEventViewSet(TenantReadOnlyViewSet):
    """The tenant's append-only audit trail, newest first; filter and export it."""

    model = AuditEvent
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilterSet
    lookup_field = "seq"
    lookup_value_regex = r"\d+"
    ordering = "-seq"
    action_permissions = {"export": "audit.view_auditevent"}

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "format",
                OpenApiTypes.STR,
                enum=list(EXPORT_FORMATS),
                description="jsonl (default) or csv",
            )
        ],
        responses={
            (200, "application/x-ndjson"): OpenApiTypes.STR,
            (200, "text/csv"): OpenApiTypes.STR,
        },
    )
    @action(detail=False, methods=["get"])
    def export(self, request, *args, **kwargs):
        """Every event matching the filters, oldest first, as JSON Lines or CSV."""
        fmt = request.query_params.get("format", "jsonl")
        if fmt not in EXPORT_FORMATS:
            raise serializers.ValidationError(
                {"format": f"Unknown format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}."}
            )
        queryset = self.filter_queryset(self.get_queryset()).order_by("seq")
        audit_record(
            action="audit.export",
            tenant=self.tenant,
            metadata={"format": fmt, "filters": dict(request.query_params.lists())},
        )
        writer, content_type = EXPORT_FORMATS[fmt]
        response = StreamingHttpResponse(
            writer(queryset.iterator(chunk_size=2000)), content_type=content_type
        )
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = (
            f'attachment; filename="audit-{self.tenant.slug}-{stamp}.{fmt}"'
        )
        return response
