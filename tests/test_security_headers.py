"""Security headers on every kind of response, and templates that keep the CSP enforceable:
no inline script and no inline event handler anywhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"\son[a-z]+\s*=\s*[\"']", re.I)


def _directives(header: str) -> dict[str, list[str]]:
    out = {}
    for part in header.split(";"):
        name, *values = part.strip().split()
        out[name] = values
    return out


@pytest.mark.parametrize(
    ("path", "signed_in"),
    [("/login/", False), ("/t/acme/", True), ("/api/v1/docs/", True), ("/healthz", False)],
)
def test_every_response_carries_the_security_headers(client, world, path, signed_in):
    if signed_in:
        client.force_login(world.alice)
    response = client.get(path)
    assert response.status_code == 200
    csp = _directives(response["Content-Security-Policy"])
    assert csp["script-src"] == ["'self'"]
    assert csp["default-src"] == ["'self'"]
    assert csp["object-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["form-action"] == ["'self'"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "camera=()" in response["Permissions-Policy"]


def test_api_errors_carry_them_too(client):
    response = client.get("/api/v1/t/acme/agents/")
    assert response.status_code == 401
    assert "script-src 'self'" in response["Content-Security-Policy"]


def test_the_api_docs_load_their_start_up_script_as_a_file(client, world):
    client.force_login(world.alice)
    page = client.get("/api/v1/docs/").content.decode()
    assert not INLINE_SCRIPT.search(page), "the docs page must not need an inline script"
    script = client.get("/api/v1/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle" in script.content


def test_no_template_has_an_inline_script_or_event_handler():
    offenders = []
    for template in TEMPLATES.rglob("*.html"):
        text = template.read_text()
        for pattern in (INLINE_SCRIPT, INLINE_HANDLER):
            for match in pattern.finditer(text):
                offenders.append(f"{template.relative_to(TEMPLATES)}: {match.group(0)}")
    assert not offenders, offenders


def test_the_detectors_themselves_work():
    assert INLINE_SCRIPT.search("<script>alert(1)</script>")
    assert not INLINE_SCRIPT.search('<script src="/static/js/live.js" defer></script>')
    assert INLINE_HANDLER.search('<form onsubmit="return confirm(1)">')
    assert not INLINE_HANDLER.search('<form data-confirm="Sure?">')


@pytest.mark.parametrize("path", ["/api/v1/t/acme/audit-events/", "/api/v1/t/acme/runs/"])
def test_time_filters_with_offsets_postgresql_cannot_store_are_converted_not_500(world, api, path):
    """Found by schemathesis: an offset of +20:43 is valid ISO 8601 but not for PostgreSQL."""
    client = api(world.alice, world.acme)
    response = client.get(path, {"since": "1247-10-07T16:30:18.701711+20:43"})
    assert response.status_code == 200, response.content
    response = client.get(path, {"since": "not a time"})
    assert response.status_code == 400
