"""Error pages: JSON in the API's error shape under /api/, templates elsewhere."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string

from controlplane.middleware import wants_json


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
