"""The OpenAI-compatible adapter: OpenAI, Azure OpenAI (v1 API), vLLM, Ollama, llama.cpp server.

Chat completions through the official ``openai`` SDK, with function calling and
``response_format`` json_schema for structured output.
"""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import openai
from openai.types.chat import ChatCompletion

from agents.providers.base import (
    STOP_END,
    STOP_MAX_TOKENS,
    STOP_REFUSAL,
    STOP_TOOL_CALLS,
    ChatResult,
    ConnectionCheck,
    Message,
    ProviderError,
    ToolCallRequest,
    ToolSpec,
    endpoint,
    error_detail,
    json_text,
    model_ids,
    shorten,
)
from agents.providers.sdk import SdkAdapter, SdkErrors, elapsed_ms

if TYPE_CHECKING:
    from collections.abc import Sequence


DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Local servers (Ollama, llama.cpp, vLLM without --api-key) need no key, but the SDK insists on one.
NO_KEY_PLACEHOLDER = "no-key"

_FINISH_REASONS = {
    "stop": STOP_END,
    "tool_calls": STOP_TOOL_CALLS,
    "function_call": STOP_TOOL_CALLS,
    "length": STOP_MAX_TOKENS,
    "content_filter": STOP_REFUSAL,
}


class OpenAIAdapter(SdkAdapter):
    """Calls an OpenAI-compatible chat-completions API once per ``chat`` (the SDK never retries).

    Every SDK failure becomes a ProviderError whose message names the provider and what to
    check, and never contains the API key.
    """

    sdk = SdkErrors(
        name="OpenAI",
        timeout=openai.APITimeoutError,
        connection=openai.APIConnectionError,
        status=openai.APIStatusError,
        response_validation=openai.APIResponseValidationError,
        any=openai.OpenAIError,
    )
    default_base_url = DEFAULT_BASE_URL

    def client(self) -> openai.AsyncOpenAI:
        return self.sdk_client(
            openai.AsyncOpenAI,
            openai.DefaultAsyncHttpxClient,
            self.api_key() or NO_KEY_PLACEHOLDER,
        )

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
        params: dict[str, Any] = {
            "model": model,
            "messages": [to_openai_message(m) for m in messages],
        }
        if tools:
            params["tools"] = [to_openai_tool(t) for t in tools]
        if temperature is not None:
            params["temperature"] = temperature
        if max_tokens is not None:
            params[self._max_tokens_param()] = max_tokens
        if response_schema is not None:
            params["response_format"] = response_format(response_schema)
        if timeout is not None:
            params["timeout"] = timeout

        started = time.perf_counter()
        completion = self.call(lambda: self.client().chat.completions.create(**params), model)
        latency_ms = (time.perf_counter() - started) * 1000
        if not isinstance(completion, ChatCompletion):
            raise self.not_json()
        if not completion.choices:
            raise self.error(f"{self.who()} answered without any choice; nothing to use.")

        choice = completion.choices[0]
        message = choice.message
        content = message.content or ""
        finish = choice.finish_reason or "stop"
        stop_reason = _FINISH_REASONS.get(finish, finish)
        if message.refusal and not content:
            content = message.refusal
            stop_reason = STOP_REFUSAL
        tool_calls = [
            self._tool_call(call) for call in message.tool_calls or [] if call.type == "function"
        ]
        if tool_calls:
            # Some local servers report "stop" even when the turn is tool calls.
            stop_reason = STOP_TOOL_CALLS
        if response_schema is not None and not tool_calls:
            content = json_text(content)
        usage = completion.usage
        return ChatResult(
            content=content,
            tool_calls=tool_calls,
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
            model=completion.model or model,
            latency_ms=latency_ms,
            stop_reason=stop_reason,
        )

    def test_connection(self) -> ConnectionCheck:
        started = time.perf_counter()
        try:
            page = self.call(lambda: self.client().models.list(), None)
            if isinstance(page, str):
                raise self.not_json()
            names = model_ids(page)
            if names is None:
                raise self.error(
                    f"{self.who()} answered, but not with an OpenAI-compatible models response "
                    '(a JSON object with a "data" list of models). Check the base URL.'
                )
        except ProviderError as err:
            return ConnectionCheck(
                ok=False, message=err.message, latency_ms=elapsed_ms(started), models=[]
            )
        message = f"Connected to {endpoint(self.base_url)}: {len(names)} models available"
        message += f" ({shorten(', '.join(names), 120)})." if names else "."
        missing = [n for n in self.provider.model_names if n not in names]
        if names and missing:
            message += f" It does not list {', '.join(missing)}, which {self.label} configures."
        return ConnectionCheck(
            ok=True, message=message, latency_ms=elapsed_ms(started), models=names
        )

    def _max_tokens_param(self) -> str:
        # OpenAI and Azure reject ``max_tokens`` for reasoning models; local servers often
        # only understand ``max_tokens``.
        host = (urlsplit(self.base_url).hostname or "").lower()
        if host == "api.openai.com" or host.endswith(".openai.azure.com"):
            return "max_completion_tokens"
        return "max_tokens"

    def status_error(self, err: openai.APIStatusError, model: str | None) -> ProviderError:
        detail, code = error_detail(err.body)
        return self.error_status(err.status_code, detail, model=model, code=err.code or code)

    def not_json(self) -> ProviderError:
        return self.error(
            f"{self.who()} answered with something that is not the JSON of an OpenAI-compatible "
            "API. Check the base URL (it usually ends in /v1).",
            retryable=False,
        )

    def _tool_call(self, call: Any) -> ToolCallRequest:
        raw = call.function.arguments or ""
        try:
            arguments = json.loads(raw) if raw.strip() else {}
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            raise self.error(
                f"The model asked for tool '{call.function.name}' with arguments that are not a "
                f"JSON object: {shorten(raw, 120)}",
                retryable=True,
            )
        return ToolCallRequest(id=call.id, name=call.function.name, arguments=arguments)


def to_openai_message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id or "",
            "content": message.content,
        }
    if message.role == "assistant":
        out: dict[str, Any] = {"role": "assistant", "content": message.content or None}
        if message.tool_calls:
            out["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                }
                for call in message.tool_calls
            ]
        return out
    out = {"role": message.role, "content": message.content}
    if message.name and message.role == "user":
        out["name"] = message.name
    return out


def to_openai_tool(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters or {"type": "object", "properties": {}},
        },
    }


def response_format(schema: dict[str, Any]) -> dict[str, Any]:
    name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or "output"))[:64]
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": schema, "strict": strict_compatible(schema)},
    }


def strict_compatible(schema: Any) -> bool:
    """Whether OpenAI's strict mode accepts the schema: every object closed, every key required."""
    if not isinstance(schema, dict):
        return True
    properties = schema.get("properties") or {}
    if schema.get("type") == "object" or properties:
        if schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required", [])) != set(properties):
            return False
    children: list[Any] = list(properties.values())
    children += list((schema.get("$defs") or {}).values())
    children += list((schema.get("definitions") or {}).values())
    for key in ("anyOf", "allOf", "oneOf", "prefixItems"):
        children += schema.get(key) or []
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            children.append(schema[key])
    return all(strict_compatible(child) for child in children)
