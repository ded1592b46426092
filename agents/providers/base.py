"""One interface over every model provider: messages in, a ChatResult or a ProviderError out.

The run engine talks only to ``Adapter``; each provider kind has its module
(``openai_compat``, ``anthropic_provider``, ``simulated``). Adapters never put an
API key into an error message, a log line or a result.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import logging
import os
import re
import socket
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import urlsplit

from agents.choices import ProviderKind
from controlplane import egress
from controlplane.errors import CodedError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from agents.models import ProviderConnection

Role = Literal["system", "user", "assistant", "tool"]

# Normalised ``ChatResult.stop_reason`` values; anything else is the provider's own word.
STOP_END = "end"
STOP_TOOL_CALLS = "tool_calls"
STOP_MAX_TOKENS = "max_tokens"
STOP_REFUSAL = "refusal"

DETAIL_LIMIT = 300

logger = logging.getLogger("agents.providers")


@dataclasses.dataclass(frozen=True)
class ToolSpec:
    """A tool offered to the model: its name, what it does, and its arguments as JSON Schema."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ToolCallRequest:
    """The model asks for one tool call; ``id`` pairs it with the tool message answering it."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclasses.dataclass
class Message:
    """One turn of a conversation, in provider-neutral form.

    ``assistant`` turns may carry ``tool_calls``; a ``tool`` turn answers one call and
    names it with ``tool_call_id`` (``name`` is the tool's name, for providers that want it).
    """

    role: Role
    content: str = ""
    tool_calls: list[ToolCallRequest] = dataclasses.field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None


@dataclasses.dataclass
class ChatResult:
    """One model answer: text (a JSON string when an output schema was asked for), tool calls,
    token usage, latency and a normalised stop reason (``end``, ``tool_calls``,
    ``max_tokens``, ``refusal``). ``simulated`` is True only for the offline simulator.
    """

    content: str
    tool_calls: list[ToolCallRequest]
    input_tokens: int
    output_tokens: int
    model: str
    latency_ms: float
    stop_reason: str
    simulated: bool = False


@dataclasses.dataclass
class ConnectionCheck:
    """The outcome of "Test connection": a message a person can act on, and the models seen."""

    ok: bool
    message: str
    latency_ms: float
    models: list[str] = dataclasses.field(default_factory=list)


class ProviderError(CodedError):
    """A model call failed; ``message`` says why in plain words and never contains a secret.

    ``status`` is the provider's HTTP status when there was one; ``retryable`` tells the
    engine whether the same call may succeed later (rate limit, timeout, server error).
    """

    default_code = "provider_error"

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False):
        super().__init__(message, retryable=retryable)
        self.status = status

    def __repr__(self) -> str:
        return f"ProviderError({self.message!r}, status={self.status}, retryable={self.retryable})"


class Adapter(abc.ABC):
    """Talks to one ProviderConnection. Every failure of a call surfaces as ``ProviderError``.

    ``chat`` is one model call (no retries: the engine owns the retry policy).
    ``test_connection`` never raises: a failure is a ``ConnectionCheck`` with ``ok=False``.
    """

    simulated: ClassVar[bool] = False

    def __init__(self, provider: ProviderConnection):
        self.provider = provider

    @abc.abstractmethod
    def chat(
        self,
        *,
        model: str,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec] = (),
        temperature: float | None = None,
        max_tokens: int | None = None,
        response_schema: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> ChatResult:
        """Send the conversation; answer with text, tool calls, or JSON matching the schema."""

    @abc.abstractmethod
    def test_connection(self) -> ConnectionCheck:
        """Make one cheap call and report, in plain words, whether the provider answers."""

    @property
    def label(self) -> str:
        return f"provider '{self.provider.slug}'"

    def api_key(self) -> str:
        return resolve_api_key(self.provider)

    def secrets(self) -> tuple[str, ...]:
        """Values to scrub from anything shown to a person."""
        try:
            key = resolve_api_key(self.provider)
        except ProviderError:
            return ()
        return (key,) if key else ()

    def error(
        self, message: str, *, status: int | None = None, retryable: bool = False
    ) -> ProviderError:
        return ProviderError(redact(message, self.secrets()), status=status, retryable=retryable)

    def refused(self, err: egress.EgressRefused) -> ProviderError:
        """The error for a call the egress guard refused: final, retrying cannot help."""
        return self.error(f"Could not reach {self.label}: {err.message}", retryable=False)

    def error_status(
        self, status: int, detail: str, *, model: str | None, code: str | None = None
    ) -> ProviderError:
        """The error for an HTTP error status; the provider's words go to the log only."""
        if detail:
            logger.info(
                "%s answered HTTP %s: %s",
                self.label,
                status,
                shorten(redact(detail, self.secrets())),
            )
        message, retryable = status_message(self.label, status, detail, model=model, code=code)
        return self.error(message, status=status, retryable=retryable)


def resolve_api_key(provider: ProviderConnection) -> str:
    """The stored key, else the environment variable the provider names, else ``""``."""
    if provider.api_key:
        return provider.api_key
    if provider.api_key_env:
        value = os.environ.get(provider.api_key_env, "")
        if not value:
            raise ProviderError(
                f"No API key for provider '{provider.slug}': it reads the key from the "
                f"environment variable {provider.api_key_env}, which is not set on this server."
            )
        return value
    return ""


def get_adapter(provider: ProviderConnection) -> Adapter:
    """The adapter for the provider's kind. Raises ProviderError for an unknown kind."""
    if provider.kind == ProviderKind.OPENAI:
        # here: each adapter imports this module (Adapter, ProviderError) and its SDK
        from agents.providers.openai_compat import OpenAIAdapter

        return OpenAIAdapter(provider)
    if provider.kind == ProviderKind.ANTHROPIC:
        from agents.providers.anthropic_provider import AnthropicAdapter

        return AnthropicAdapter(provider)
    if provider.kind == ProviderKind.SIMULATED:
        from agents.providers.simulated import SimulatedAdapter

        return SimulatedAdapter(provider)
    raise ProviderError(f"Provider '{provider.slug}' has an unknown kind {provider.kind!r}.")


def cost_usd(
    provider: ProviderConnection, model: str, input_tokens: int, output_tokens: int
) -> float:
    """Cost of one call from the provider's per-million-token prices (0 for unpriced models)."""
    input_price, output_price = provider.price_of(model)
    return (input_tokens * input_price + output_tokens * output_price) / 1_000_000


# Shapes of credentials that providers echo back in error bodies (often partly masked).
_KEY_LIKE = re.compile(
    r"(?i)\b(?:bearer\s+\S+|sk-[\w\-*.]{6,}|(?:api[-_]?key|key)[-_:=\s]+[\w\-*.]{12,})"
)


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """Replace the given secrets and anything shaped like an API key with ``[redacted]``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return _KEY_LIKE.sub("[redacted]", text)


def shorten(text: str, limit: int = DETAIL_LIMIT) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def endpoint(base_url: str) -> str:
    """``scheme://host[:port]`` of a URL: enough to recognise it, never its userinfo or path."""
    parts = urlsplit(base_url)
    if not parts.hostname:
        return base_url or "(no base URL)"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def status_message(
    label: str, status: int, detail: str, *, model: str | None, code: str | None = None
) -> tuple[str, bool]:
    """(plain message, retryable) for an HTTP error status from a provider.

    The provider's own words (``detail``) are not repeated (``Adapter.error_status`` logs
    them for the operator): a base URL pointing at some other service would otherwise read
    that service's answers back to whoever sees the message. ``detail`` only picks the
    wording, e.g. for quota errors.
    """
    if status == 401:
        return (
            f"The provider rejected the API key (HTTP 401). Check the key stored for {label}.",
            False,
        )
    if status == 402:
        return "The provider wants payment: the account is out of credit (HTTP 402).", False
    if status == 403:
        return (
            f"The API key of {label} is not allowed to do this, or not for this model (HTTP 403).",
            False,
        )
    if status == 404:
        what = f"the model '{model}'" if model else "this endpoint"
        return (
            f"The provider does not know {what} (HTTP 404). Check the model name and the base "
            f"URL of {label}.",
            False,
        )
    if status == 408:
        return "The provider timed out handling the request (HTTP 408). Retry later.", True
    if status == 413:
        return "The request is too large for the provider (HTTP 413).", False
    if status == 429:
        if code == "insufficient_quota":
            return (
                f"The account of {label} has run out of quota (HTTP 429). Add credit or raise "
                f"the limit.",
                False,
            )
        return (
            f"The provider is rate-limiting {label} (HTTP 429). Wait and retry, or raise the "
            f"limit.",
            True,
        )
    if status == 529:
        return "The provider is overloaded (HTTP 529). Retry later.", True
    if status >= 500:
        return (
            f"The provider failed with a server error (HTTP {status}). This is on the "
            f"provider's side; retry later.",
            True,
        )
    if status == 400:
        return "The provider rejected the request as invalid (HTTP 400).", False
    if status == 422:
        return "The provider could not process the request (HTTP 422).", False
    return f"The provider answered with an error (HTTP {status}).", status == 409


NO_ANSWER = "no HTTP answer (the connection failed, was closed or timed out)"


def connection_reason(err: BaseException) -> str:
    """Why a connection failed, from the exception chain, in a few plain words.

    A host name that does not resolve and a refusal by the egress guard are told apart;
    every other failure (refused, reset, TLS, a server that is not HTTP) reads the same,
    so the message cannot be used to tell which ports of a network answer.
    """
    refused = egress.refused_in(err)
    if refused is not None:
        return refused.message
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, socket.gaierror):
            return "the host name does not resolve"
        text = str(current).lower()
        if "name or service not known" in text or "nodename nor servname" in text:
            return "the host name does not resolve"
        current = current.__cause__ or current.__context__
    return NO_ANSWER


def model_ids(page: object) -> list[str] | None:
    """The model ids of a models-list answer, or None when it is not one (no ``data`` list)."""
    data = getattr(page, "data", None)
    if not isinstance(data, list):
        return None
    ids = [getattr(item, "id", None) for item in data]
    if not all(isinstance(i, str) for i in ids):
        return None
    return ids


def error_detail(body: object) -> tuple[str, str | None]:
    """(message, code) from a provider's JSON error body, in OpenAI or Anthropic shape."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            message = inner.get("message") or ""
            code = inner.get("code") or inner.get("type")
            return str(message), (str(code) if code is not None else None)
        if isinstance(inner, str):
            return inner, None
        return "", None
    if isinstance(body, str):
        return body, None
    return "", None


def json_text(text: str) -> str:
    """Structured output as plain JSON text: unwraps a code fence when that makes it valid."""
    stripped = text.strip()
    # String operations, not a regex: ```(?:json)?\s*(.*?)\s*``` backtracked for minutes on
    # a fence followed by 20,000 spaces, which any model (or provider endpoint) can send.
    if len(stripped) >= 6 and stripped.startswith("```") and stripped.endswith("```"):
        body = stripped[3:-3]
        inner = (body[4:] if body.startswith("json") else body).strip()
        try:
            json.loads(inner)
        except ValueError:
            return text
        return inner
    return text
