"""The view serving the OpenAPI schema: YAML by default, JSON with ``?format=json``."""

from drf_spectacular.renderers import OpenApiJsonRenderer
from drf_spectacular.views import SpectacularAPIView
from rest_framework import exceptions
from rest_framework.negotiation import DefaultContentNegotiation


class _FormatParameterNegotiation(DefaultContentNegotiation):
    """``?format=json`` or ``?format=yaml`` picks the schema's format (an Accept header still
    works). The API's own views have one format, so URL_FORMAT_OVERRIDE stays off for them."""

    def select_renderer(self, request, renderers, format_suffix=None):
        chosen = request.query_params.get("format")
        if chosen is not None and chosen not in ("json", "yaml"):
            raise exceptions.ValidationError(
                {"format": "Give json or yaml, or leave it out for YAML."}
            )
        return super().select_renderer(request, renderers, format_suffix=chosen or format_suffix)


class SchemaView(SpectacularAPIView):
    """The OpenAPI schema: YAML by default, JSON with ``?format=json`` or
    ``Accept: application/vnd.oai.openapi+json``."""

    content_negotiation_class = _FormatParameterNegotiation

    def perform_content_negotiation(self, request, force=False):
        if not force:
            return super().perform_content_negotiation(request)
        # the error of a refused ?format is answered in JSON, like every API error
        renderer = OpenApiJsonRenderer()
        return renderer, renderer.media_type
