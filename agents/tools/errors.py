"""Tool errors: the coded error every failed tool call raises, and the one wording for each way
a network call can fail (an HTTP status, an egress refusal, no answer)."""

from __future__ import annotations

import http

from controlplane import egress
from controlplane.errors import CodedError


class ToolError(CodedError):
    """A tool call that did not produce a result, told in words meant for a person or a model.

    ``code`` is stable and machine-readable (``invalid_arguments``, ``invalid_output``,
    ``invalid_schema``, ``host_not_allowed``, ``egress_refused``, ``timeout``,
    ``upstream_error``, ``not_found``, ``disabled``, ``internal_error``); ``retryable`` says
    whether the same call may succeed later; ``details`` carries structured extras
    (``errors`` with paths, an HTTP ``status``).
    """

    default_code = "upstream_error"


def status_line(status: int) -> str:
    """``HTTP 500 Internal Server Error``: the status in standard words, never the server's."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP {status} {phrase}".rstrip()


def egress_error(exc: egress.EgressRefused) -> ToolError:
    """The tool error for a call the egress guard refused (final: retrying cannot help)."""
    return ToolError(exc.message, code="egress_refused", details={"host": exc.host})


def no_answer(
    where: str, *, code: str = "upstream_error", within: float | None = None
) -> ToolError:
    """One wording for every way a connection can fail to give an HTTP answer.

    A refused port, a reset, a server speaking another protocol and a timeout read alike,
    so errors cannot be used to map which ports of a network answer and with what.
    """
    limit = f" within {within:g} seconds" if within is not None else ""
    return ToolError(
        f"No HTTP answer from {where}{limit}: the connection failed, was closed or timed out.",
        code=code,
        retryable=True,
    )
