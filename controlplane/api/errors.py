"""One error body for every API error: drf-standardized-errors' shape.

``{"type": "validation_error" | "client_error" | "server_error",
   "errors": [{"code": ..., "detail": ..., "attr": <field or null>}]}``

Django ``ValidationError`` and ``PermissionDenied`` raised by services are
turned into 400 and 403 with the same shape, field by field; a body over
``DATA_UPLOAD_MAX_MEMORY_SIZE`` (Django's ``RequestDataTooBig``) into a 413 that states the limit.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from drf_standardized_errors.handler import exception_handler as standardized_handler
from rest_framework import exceptions
from rest_framework.fields import get_error_detail

from controlplane.crypto import SecretDecryptionError
from controlplane.errors import too_big_message


class RequestTooLarge(exceptions.APIException):
    status_code = 413
    default_code = "request_too_large"
    default_detail = "The request body is too large."


def exception_handler(exc, context):
    if isinstance(exc, OperationalError | InterfaceError | SecretDecryptionError):
        # Re-raised so DatabaseUnavailableMiddleware answers 503 with what to do, not a 500.
        return None
    if isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge(detail=too_big_message())
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(detail=get_error_detail(exc))
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(detail=str(exc) or None)
    return standardized_handler(exc, context)
