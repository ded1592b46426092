"""Request-wide middleware: request id and address in context; 503 when the database is down."""

from __future__ import annotations

import logging
import re

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string

from controlplane import context

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
