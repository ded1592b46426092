"""The API's JSON parser: DRF's, behind the input limits of ``controlplane.jsoninput``.

Every JSON body of the API is read here (``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``), so a
NUL character or a nesting deeper than ``JSON_MAX_DEPTH`` is a 400 before any serializer,
service or database sees it.
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, parsers
from rest_framework.exceptions import ErrorDetail
from rest_framework.settings import api_settings
from rest_framework.utils import json as drf_json

from controlplane import jsoninput


class JSONParser(parsers.JSONParser):
    """Strict JSON with the project's limits; errors in the API's shape, naming the field."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        encoding = parsers.get_encoding(parser_context or {})
        raw = stream.read() if stream is not None else b""
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            raise exceptions.ParseError(
                f"The body is not valid {encoding} text.", code="parse_error"
            ) from None
        parse_constant = drf_json.strict_constant if api_settings.STRICT_JSON else None
        try:
            return jsoninput.load(text, parse_constant=parse_constant)
        except jsoninput.JSONInputError as exc:
            if exc.code == "too_deep":
                raise exceptions.ParseError(exc.message, code=exc.code) from None
            raise exceptions.ValidationError(
                {exc.path or "non_field_errors": [ErrorDetail(exc.message, code=exc.code)]}
            ) from None
        except ValueError as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
