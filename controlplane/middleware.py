"""Request-wide middleware: request id and address in context; 503 when the database is down
or a stored secret cannot be decrypted;
400 for a NUL character in the query string."""

from __future__ import annotations

import logging
import re

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, HttpResponseBadRequest, JsonResponse
from django.template.loader import render_to_string

from controlplane import context
from controlplane.crypto import SecretDecryptionError

logger = logging.getLogger(__name__)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestContextMiddleware:
    """Give every request an id (or keep a sane incoming X-Request-ID) and record its address."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else context.new_request_id()
        request.request_id = request_id
        token = context.set_context(
            context.RequestContext(request_id=request_id, ip=request.META.get("REMOTE_ADDR"))
        )
        try:
            response = self.get_response(request)
        finally:
            context.reset_context(token)
        response["X-Request-ID"] = request_id
        response.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY_HEADER)
        return response


def wants_json(request) -> bool:
    return request.path.startswith("/api/") or request.path in ("/readyz", "/healthz")


class DatabaseUnavailableMiddleware:
    """A lost database connection answers 503 with a body that says so, never a stack trace."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, SecretDecryptionError):
            return secrets_unusable(request, exception)
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.error("database unavailable: %s", exception)
        if wants_json(request):
            return JsonResponse(
                {
                    "type": "server_error",
                    "errors": [
                        {
                            "code": "database_unavailable",
                            "detail": "The database is unavailable; retry shortly.",
                            "attr": None,
                        }
                    ],
                },
                status=503,
                headers={"Retry-After": "5"},
            )
        # Rendered without the request: context processors would read the session and the
        # user from the database that is down, and turn this 503 into a bare 500.
        return HttpResponse(render_to_string("503.html"), status=503, headers={"Retry-After": "5"})


def secrets_unusable(request, exception: SecretDecryptionError) -> HttpResponse:
    """503 for a stored secret no configured key decrypts (keys rotated without this server
    being given the new list): says what to do; an operator's fix, not the user's."""
    logger.error("secrets unusable: %s", exception)
    detail = str(exception)
    if wants_json(request):
        return JsonResponse(
            {
                "type": "server_error",
                "errors": [{"code": SecretDecryptionError.code, "detail": detail, "attr": None}],
            },
            status=503,
        )
    # Rendered without the request, like the database page: the page's context must not
    # need anything that could fail the same way.
    return HttpResponse(render_to_string("503_secrets.html", {"detail": detail}), status=503)


def client_error(code: str, detail: str, *, status: int, attr: str | None = None) -> JsonResponse:
    """A 4xx in the API's error shape, for answers given before DRF sees the request."""
    kind = "validation_error" if attr is not None else "client_error"
    return JsonResponse(
        {"type": kind, "errors": [{"code": code, "detail": detail, "attr": attr}]}, status=status
    )


class QueryStringMiddleware:
    """A NUL character (``%00``) in a query parameter's name or value answers 400, naming it.

    PostgreSQL cannot compare with a string holding one, so a filter or an export given one
    failed inside its query as a 500. Checked once here for every API route and page.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        query = request.META.get("QUERY_STRING", "")
        if "%00" in query or "\x00" in query:
            for name, values in request.GET.lists():
                if "\x00" in name or any("\x00" in value for value in values):
                    return self._refuse(request, name.replace("\x00", "\\u0000"))
        return self.get_response(request)

    @staticmethod
    def _refuse(request, name: str) -> HttpResponse:
        detail = f"Remove the NUL character (%00) from the query parameter '{name}'."
        if wants_json(request):
            return client_error("null_character", detail, status=400, attr=name)
        return HttpResponseBadRequest(render_to_string("400.html", {"detail": detail}))
