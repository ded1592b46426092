"""Errors: the coded-error base every layer raises, and the error pages.

``CodedError`` is the one base for failures told in words (``ToolError``, ``StepFailure``,
``ProviderError``); the handlers answer JSON in the API's error shape under /api/ and
templates elsewhere. Imports Django and ``controlplane`` only.
"""

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string

from controlplane.middleware import wants_json


class CodedError(Exception):
    """A failure told in words meant for a person or a model, with a stable machine code.

    ``code`` is machine-readable; ``retryable`` says whether the same call may succeed
    later; ``details`` carries structured extras. Subclasses set ``default_code``.
    """

    default_code = "error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool = False,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.retryable = retryable
        self.details = details or {}

    def as_dict(self) -> dict[str, Any]:
        """The error as a JSON object (for run events and API bodies)."""
        return {
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
            **({"details": self.details} if self.details else {}),
        }


def _json(status: int, code: str, detail: str, kind: str) -> JsonResponse:
    return JsonResponse(
        {"type": kind, "errors": [{"code": code, "detail": detail, "attr": None}]}, status=status
    )


def too_big_message() -> str:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return (
        f"The request body is over the limit of {limit:,} bytes ({limit / 2**20:.1f} MiB); "
        "send less (the limit is the MAX_REQUEST_BODY_BYTES setting)."
    )


def handler_400(request, exception=None):
    # Django answers a body over DATA_UPLOAD_MAX_MEMORY_SIZE read outside DRF (a dashboard
    # form) with a 400; it is a 413, and says the limit.
    if isinstance(exception, RequestDataTooBig):
        if wants_json(request):
            return _json(413, "request_too_large", too_big_message(), "client_error")
        return HttpResponse(render_to_string("413.html", {"detail": too_big_message()}), status=413)
    if wants_json(request):
        return _json(400, "bad_request", "The request could not be understood.", "client_error")
    return HttpResponse(render_to_string("400.html"), status=400)


def handler_404(request, exception=None):
    if wants_json(request):
        return _json(
            404, "not_found", "Not found: check the URL and the tenant slug.", "client_error"
        )
    return render(request, "404.html", status=404)


def handler_500(request):
    if wants_json(request):
        return _json(
            500,
            "error",
            "Something went wrong on our side; it has been logged. "
            "Quote the X-Request-ID header when reporting it.",
            "server_error",
        )
    # Without the request: the failure may be the database, which context processors read.
    return HttpResponse(render_to_string("500.html"), status=500)
