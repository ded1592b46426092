"""Error pages: JSON in the API's error shape under /api/, templates elsewhere."""

from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string

from controlplane.middleware import wants_json


def _json(status: int, code: str, detail: str, kind: str) -> JsonResponse:
    return JsonResponse(
        {"type": kind, "errors": [{"code": code, "detail": detail, "attr": None}]}, status=status
    )


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
