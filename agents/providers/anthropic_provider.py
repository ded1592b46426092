"""The Anthropic adapter: the Messages API through the official ``anthropic`` SDK.

Named ``anthropic_provider`` so that ``import anthropic`` keeps meaning the SDK.
System turns go to the separate ``system`` parameter, tool calls are ``tool_use``
blocks and tool results ``tool_result`` blocks in a user turn. Structured output
is a forced tool whose input schema is the output schema: it works on every
tool-capable model and alongside the agent's own tools.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import anthropic
from anthropic.types import Message as AnthropicMessage

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
)
from agents.providers.sdk import SdkAdapter, SdkErrors, elapsed_ms

if TYPE_CHECKING:
    from collections.abc import Sequence


DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_MAX_TOKENS = 4096
OUTPUT_TOOL = "final_answer"
OUTPUT_TOOL_DESCRIPTION = (
    "Give your final answer. Call this once, when you are done (after any other tools you "
    "need), with the answer as the input."
)
# The output tool's input must be an object; other output schemas travel wrapped in this key.
WRAPPED_KEY = "output"

_STOP_REASONS = {
    "end_turn": STOP_END,
    "stop_sequence": STOP_END,
    "tool_use": STOP_TOOL_CALLS,
    "max_tokens": STOP_MAX_TOKENS,
    "model_context_window_exceeded": STOP_MAX_TOKENS,
    "refusal": STOP_REFUSAL,
}


class AnthropicAdapter(SdkAdapter):
    """Calls the Anthropic Messages API once per ``chat`` (the SDK never retries).

    Every SDK failure becomes a ProviderError that names the provider and what to check,
    and never contains the API key. ``temperature`` is not sent: this SDK generation no
    longer has the parameter.
    """

    sdk = SdkErrors(
        name="Anthropic",
        timeout=anthropic.APITimeoutError,
        connection=anthropic.APIConnectionError,
        status=anthropic.APIStatusError,
        response_validation=anthropic.APIResponseValidationError,
        any=anthropic.AnthropicError,
    )
    default_base_url = DEFAULT_BASE_URL

    def client(self) -> anthropic.AsyncAnthropic:
        key = self.api_key()
        if not key:
            raise self.error(
                f"No API key for {self.label}: store one, or name the environment variable "
                "that holds it."
            )
        return self.sdk_client(anthropic.AsyncAnthropic, anthropic.DefaultAsyncHttpxClient, key)

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
        system, turns = to_anthropic_messages(messages)
        params: dict[str, Any] = {
            "model": model,
            "messages": turns,
            "max_tokens": max_tokens or DEFAULT_MAX_TOKENS,
        }
        if system:
            params["system"] = system
        wire_tools = [to_anthropic_tool(t) for t in tools]
        output_tool = None
        wrapped = False
        if response_schema is not None:
            output_tool = _free_name(OUTPUT_TOOL, {t.name for t in tools})
            wrapped = response_schema.get("type") != "object"
            input_schema = response_schema
            if wrapped:
                input_schema = {
                    "type": "object",
                    "properties": {WRAPPED_KEY: response_schema},
                    "required": [WRAPPED_KEY],
                }
            wire_tools.append(
                {
                    "name": output_tool,
                    "description": OUTPUT_TOOL_DESCRIPTION,
                    "input_schema": input_schema,
                }
            )
            params["tool_choice"] = (
                {"type": "any"} if tools else {"type": "tool", "name": output_tool}
            )
        if wire_tools:
            params["tools"] = wire_tools
        if timeout is not None:
            params["timeout"] = timeout

        started = time.perf_counter()
        reply = self.call(lambda: self.client().messages.create(**params), model)
        latency_ms = (time.perf_counter() - started) * 1000
        if not isinstance(reply, AnthropicMessage):
            raise self.not_json()

        texts: list[str] = []
        tool_calls: list[ToolCallRequest] = []
        output: Any = None
        for block in reply.content:
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use":
                if block.name == output_tool:
                    output = block.input.get(WRAPPED_KEY) if wrapped else dict(block.input)
                else:
                    tool_calls.append(
                        ToolCallRequest(id=block.id, name=block.name, arguments=dict(block.input))
                    )
        stop_reason = _STOP_REASONS.get(reply.stop_reason or "", reply.stop_reason or STOP_END)
        if tool_calls:
            stop_reason = STOP_TOOL_CALLS
        content = "".join(texts)
        if output is not None and not tool_calls:
            content = json.dumps(output)
            stop_reason = STOP_END
        elif response_schema is not None and not tool_calls:
            content = json_text(content)
        usage = reply.usage
        # Cached prompt tokens are still input; Anthropic reports them apart from input_tokens.
        input_tokens = (
            usage.input_tokens
            + (usage.cache_creation_input_tokens or 0)
            + (usage.cache_read_input_tokens or 0)
        )
        return ChatResult(
            content=content,
            tool_calls=tool_calls,
            input_tokens=input_tokens,
            output_tokens=usage.output_tokens,
            model=reply.model or model,
            latency_ms=latency_ms,
            stop_reason=stop_reason,
        )

    def test_connection(self) -> ConnectionCheck:
        started = time.perf_counter()
        try:
            page = self.call(lambda: self.client().models.list(limit=1), None)
            if isinstance(page, str):
                raise self.not_json()
            names = model_ids(page)
            if names is None:
                raise self.error(
                    f"{self.who()} answered, but not with an Anthropic models response "
                    '(a JSON object with a "data" list of models). Check the base URL.'
                )
        except ProviderError as err:
            return ConnectionCheck(
                ok=False, message=err.message, latency_ms=elapsed_ms(started), models=[]
            )
        message = f"Connected to {endpoint(self.base_url)}: the API key works"
        message += f" (newest model: {names[0]})." if names else "."
        return ConnectionCheck(
            ok=True, message=message, latency_ms=elapsed_ms(started), models=names
        )

    def status_error(self, err: anthropic.APIStatusError, model: str | None) -> ProviderError:
        detail, code = error_detail(err.body)
        return self.error_status(err.status_code, err.api_message or detail, model=model, code=code)

    def not_json(self) -> ProviderError:
        return self.error(
            f"{self.who()} answered with something that is not the JSON of the Anthropic "
            "Messages API. Check the base URL.",
        )


def to_anthropic_messages(messages: Sequence[Message]) -> tuple[str, list[dict[str, Any]]]:
    """(system prompt, turns): tool results become user turns; adjacent same-role turns merge."""
    system_parts: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            if message.content:
                system_parts.append(message.content)
            continue
        if message.role == "tool":
            role = "user"
            blocks: list[dict[str, Any]] = [
                {
                    "type": "tool_result",
                    "tool_use_id": message.tool_call_id or "",
                    "content": message.content,
                }
            ]
        else:
            role = message.role
            blocks = [{"type": "text", "text": message.content}] if message.content else []
            if message.role == "assistant":
                blocks += [
                    {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
                    for call in message.tool_calls
                ]
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return "\n\n".join(system_parts), turns


def to_anthropic_tool(tool: ToolSpec) -> dict[str, Any]:
    return {
        "name": tool.name,
        "description": tool.description,
        "input_schema": tool.parameters or {"type": "object", "properties": {}},
    }


def _free_name(name: str, taken: set[str]) -> str:
    while name in taken:
        name += "_"
    return name
