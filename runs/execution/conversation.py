"""What the llm loop says and keeps: messages as JSON, the output check, token estimates,
and the bounded values and errors that go into run events and back to the model.

Also for the execution's other users of a conversation (orchestration's handoffs, which
store messages as JSON; the policy guard's budget estimate).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from agents.providers.base import Message, ToolCallRequest, ToolSpec, json_text
from agents.tools.base import validation_errors
from policies.choices import Effect
from policies.decision import Decision

EVENT_VALUE_LIMIT = 8_000  # characters of JSON kept for tool arguments / results in events
MAX_ERRORS_SHOWN = 10


def message_to_dict(message: Message) -> dict[str, Any]:
    """A ``Message`` as plain JSON (keys with empty values left out)."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "name": c.name, "arguments": c.arguments} for c in message.tool_calls
        ]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    if message.name:
        out["name"] = message.name
    return out


def message_from_dict(data: dict[str, Any] | Message) -> Message:
    """The inverse of ``message_to_dict``; a ``Message`` is returned unchanged."""
    if isinstance(data, Message):
        return data
    return Message(
        role=data["role"],
        content=data.get("content") or "",
        tool_calls=[
            ToolCallRequest(id=c["id"], name=c["name"], arguments=c.get("arguments") or {})
            for c in data.get("tool_calls") or []
        ],
        tool_call_id=data.get("tool_call_id"),
        name=data.get("name"),
    )


def messages_to_json(messages: Iterable[Message | dict[str, Any]]) -> list[dict[str, Any]]:
    """A conversation as a JSON list (accepts ``Message``s or dicts already in that shape)."""
    return [message_to_dict(message_from_dict(m)) for m in messages]


def input_text(value: Any) -> str:
    """The user turn for a step input: a string as is, anything else as pretty JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def parse_output(content: str, schema: dict[str, Any]) -> tuple[Any, list[dict[str, str]]]:
    """(value, errors): the answer parsed as JSON (a code fence stripped) and checked.

    ``errors`` lists ``{"path", "message"}`` (``$`` for text that is not JSON); empty when
    the value is valid. Raises ``ToolError(invalid_schema)`` when the schema is broken.
    """
    text = json_text(content).strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        value = json.loads(text)
    except ValueError as exc:
        where = f" (line {exc.lineno}, column {exc.colno}: {exc.msg})" if text else ""
        return None, [{"path": "$", "message": f"the answer is not valid JSON{where}"}]
    return value, validation_errors(schema, value)


def estimate_input_tokens(messages: Iterable[Message], tools: Iterable[ToolSpec]) -> int:
    """What a model call's request will count as input, before it is sent: one token per
    four characters of the messages and tool schemas as JSON (the usual rule of thumb for
    English and JSON; providers' tokenizers differ, and the budget is reconciled to the
    actual usage after the call)."""
    payload = {
        "messages": messages_to_json(messages),
        "tools": [
            {"name": t.name, "description": t.description, "parameters": t.parameters}
            for t in tools
        ],
    }
    return math.ceil(len(json.dumps(payload, ensure_ascii=False, default=str)) / 4)


def format_errors(errors: list[dict[str, str]]) -> str:
    """Schema errors as ``$.path: message`` lines (at most ``MAX_ERRORS_SHOWN``)."""
    shown = [f"{e['path']}: {e['message']}" for e in errors[:MAX_ERRORS_SHOWN]]
    if len(errors) > MAX_ERRORS_SHOWN:
        shown.append(f"(and {len(errors) - MAX_ERRORS_SHOWN} more)")
    return "; ".join(shown)


def bounded(value: Any, limit: int = EVENT_VALUE_LIMIT) -> Any:
    """``value`` when its JSON fits in ``limit`` characters, else a truncated preview."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    if len(text) <= limit:
        return value
    return {"truncated": True, "preview": text[:limit]}


def decision_error(decision: Decision, what: str) -> dict[str, str]:
    """The tool-error body for a refused call (deny or require_approval)."""
    if decision.effect == Effect.REQUIRE_APPROVAL:
        return {
            "error": f"{what} requires an approval ({decision.reason}), which cannot be asked "
            "for from inside this step. Continue without it, or say that approval is needed.",
            "code": "approval_required",
        }
    return {
        "error": f"A policy denied {what[0].lower() + what[1:]}: {decision.reason}. "
        "Do not retry the same call; continue without it.",
        "code": "policy_denied",
    }
