"""OpenAPI descriptions of our authentication classes and error responses (loaded by the api
app). The view serving the schema is in ``schema_view`` (importing DRF views here would be
circular: they load ``AutoSchema`` from this module)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_standardized_errors.handler import exception_handler as standardized_errors_handler
from drf_standardized_errors.openapi import AutoSchema as StandardizedErrorsAutoSchema
from rest_framework import serializers

from controlplane.api.errors import exception_handler as project_exception_handler


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "controlplane.api.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token (cp_...) bound to one tenant; create it in the "
            "dashboard or with manage.py create_api_token.",
        }


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = "controlplane.api.authentication.SessionAuthentication"
    name = "sessionAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}


# Error responses -----------------------------------------------------------------------------
class _ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    detail = serializers.CharField()
    attr = serializers.CharField(
        allow_null=True, help_text="The field at fault (a dotted path into nested data), or null."
    )


class ErrorResponse400Serializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["validation_error", "client_error"])
    errors = _ErrorSerializer(many=True)


class _RequestTooLargeErrorSerializer(_ErrorSerializer):
    code = serializers.ChoiceField(choices=["request_too_large"])


class ErrorResponse413Serializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["client_error"])
    errors = _RequestTooLargeErrorSerializer(many=True)


class _DatabaseUnavailableErrorSerializer(_ErrorSerializer):
    code = serializers.ChoiceField(choices=["database_unavailable"])


class ErrorResponse503Serializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["server_error"])
    errors = _DatabaseUnavailableErrorSerializer(many=True)


_EXTRA_ERRORS = {"413": ErrorResponse413Serializer, "503": ErrorResponse503Serializer}


class AutoSchema(StandardizedErrorsAutoSchema):
    """drf-standardized-errors' schema, with the error responses our handler answers.

    The package documents 4xx/5xx responses only for views whose exception handler is its own;
    ours (``controlplane.api.errors.exception_handler``) wraps it and answers the same shape, so
    without this every error response was missing from the schema. A 400 is documented in one
    generic shape: services report errors by dotted path (``config.provider``) and by header
    (``Idempotency-Key``), which a per-serializer enumeration of fields would not admit.
    """

    def _get_allowed_error_status_codes(self) -> list[str]:
        return [*super()._get_allowed_error_status_codes(), *_EXTRA_ERRORS]

    def _should_add_error_response(self, responses: dict, status_code: str) -> bool:
        if self.view.get_exception_handler() is not project_exception_handler:
            return False
        if status_code in responses:
            return False
        # Answered by any operation: a NUL in any query parameter is a 400
        # (QueryStringMiddleware), a lost database a 503 (DatabaseUnavailableMiddleware); a
        # body over MAX_REQUEST_BODY_BYTES is a 413 wherever there is a body.
        if status_code in ("400", "503"):
            return True
        if status_code == "413":
            return self.method in ("POST", "PUT", "PATCH")
        self.view.get_exception_handler = lambda: standardized_errors_handler
        try:
            return super()._should_add_error_response(responses, status_code)
        finally:
            del self.view.get_exception_handler

    def _get_error_response_serializer(self, status_code: str):
        if status_code == "400":
            return ErrorResponse400Serializer
        if status_code in _EXTRA_ERRORS:
            return _EXTRA_ERRORS[status_code]
        return super()._get_error_response_serializer(status_code)
