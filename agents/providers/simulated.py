"""The simulated provider: answers offline and deterministically, so the demo runs with no key.

Same input, same output. A system prompt can script tool calls with lines
``SIMULATE call <tool_name> <json-args>``: the first call returns those calls (only
for tools offered), and once tool results arrive the answer mentions them. With an
output schema the answer is JSON built from the schema and valid against it; otherwise
it is ``"[simulated <model>] "`` and a short answer derived from the last user message.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import time
import uuid
from typing import TYPE_CHECKING, Any

import jsonschema

from agents.providers.base import (
    STOP_END,
    STOP_MAX_TOKENS,
    STOP_TOOL_CALLS,
    Adapter,
    ChatResult,
    ConnectionCheck,
    Message,
    ProviderError,
    ToolCallRequest,
    ToolSpec,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

CHECK_MESSAGE = "Simulated provider: answers offline and deterministically"
# [ \t]* not \s* at the start: \s* ran over every following blank line from every line
# start (quadratic: 1.5 s for a prompt of 32,000 newlines); the groups found are the same.
SCRIPT_LINE = re.compile(r"^[ \t]*SIMULATE call (\S+)\s*(.*?)\s*$", re.MULTILINE)
EXCERPT_WORDS = 12
# Property names whose string value should carry the answer rather than a placeholder.
ANSWER_NAMES = (
    "answer",
    "summary",
    "reply",
    "response",
    "text",
    "message",
    "reason",
    "explanation",
    "content",
    "result",
    "output",
    "description",
    "body",
    "title",
    "note",
)
FORMAT_VALUES = {
    "email": "simulated@example.com",
    "date": "2024-01-01",
    "date-time": "2024-01-01T00:00:00Z",
    "time": "00:00:00Z",
    "uri": "https://example.com/simulated",
    "url": "https://example.com/simulated",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
}


class SimulatedAdapter(Adapter):
    """A deterministic, offline stand-in for a model: no network, no key, ``simulated=True``.

    Raises ProviderError only for a broken script line or an output schema it cannot satisfy.
    """

    simulated = True

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
        started = time.perf_counter()
        system = "\n".join(m.content for m in messages if m.role == "system")
        user_text = next((m.content for m in reversed(messages) if m.role == "user"), "")
        results = tool_results_since_last_user(messages)
        offered = {t.name for t in tools}

        tool_calls: list[ToolCallRequest] = []
        if not results:
            tool_calls = [
                call for call in scripted_calls(system, user_text) if call.name in offered
            ]
        stop_reason = STOP_TOOL_CALLS if tool_calls else STOP_END
        if tool_calls:
            content = ""
        elif response_schema is not None:
            hint = answer_text(user_text, results)
            value = SchemaValueBuilder(response_schema, user_text=user_text, answer=hint).build()
            content = json.dumps(value)
        else:
            content = f"[simulated {model}] {answer_text(user_text, results)}"
            if max_tokens is not None and estimate_tokens(content) > max_tokens:
                content = " ".join(content.split()[: max(1, math.floor(max_tokens * 0.75))])
                stop_reason = STOP_MAX_TOKENS

        prompt = " ".join(
            [m.content for m in messages]
            + [json.dumps(c.arguments) for m in messages for c in m.tool_calls]
            + [f"{t.name} {t.description} {json.dumps(t.parameters)}" for t in tools]
        )
        produced = content + " ".join(f"{c.name} {json.dumps(c.arguments)}" for c in tool_calls)
        return ChatResult(
            content=content,
            tool_calls=tool_calls,
            input_tokens=estimate_tokens(prompt),
            output_tokens=estimate_tokens(produced),
            model=model,
            latency_ms=(time.perf_counter() - started) * 1000,
            stop_reason=stop_reason,
            simulated=True,
        )

    def test_connection(self) -> ConnectionCheck:
        started = time.perf_counter()
        return ConnectionCheck(
            ok=True,
            message=CHECK_MESSAGE,
            latency_ms=(time.perf_counter() - started) * 1000,
            models=self.provider.model_names or ["simulated"],
        )


def estimate_tokens(text: str) -> int:
    """Roughly four tokens for every three words, as English text averages."""
    words = len(text.split())
    return math.ceil(words * 4 / 3)


def tool_results_since_last_user(messages: Sequence[Message]) -> list[Message]:
    """Tool turns after the last user turn, each named (from its call when it has no name)."""
    names = {call.id: call.name for m in messages for call in m.tool_calls}
    results: list[Message] = []
    for message in reversed(messages):
        if message.role == "user":
            break
        if message.role == "tool":
            name = message.name or names.get(message.tool_call_id or "", "tool")
            results.append(dataclasses.replace(message, name=name))
    return list(reversed(results))


def scripted_calls(system: str, user_text: str) -> list[ToolCallRequest]:
    """The ``SIMULATE call`` lines of a system prompt, as tool calls with stable ids."""
    calls = []
    for index, match in enumerate(SCRIPT_LINE.finditer(system)):
        name, raw = match.group(1), match.group(2) or "{}"
        try:
            arguments = json.loads(raw)
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            raise ProviderError(
                f"The simulated provider cannot read the script line 'SIMULATE call {name} "
                f"{raw}': the arguments must be a JSON object."
            )
        digest = hashlib.sha256(f"{index}|{name}|{raw}|{user_text}".encode()).hexdigest()[:12]
        calls.append(ToolCallRequest(id=f"sim_{digest}", name=name, arguments=arguments))
    return calls


def excerpt(text: str, words: int = EXCERPT_WORDS) -> str:
    parts = text.split()
    short = " ".join(parts[:words])
    return short + ("…" if len(parts) > words else "")


def answer_text(user_text: str, results: Sequence[Message]) -> str:
    """A short deterministic answer: an echo of the request, and the tool results if any."""
    if results:
        seen = "; ".join(f"{r.name} returned {excerpt(r.content, 20)}" for r in results)
        return f"Based on the tool results ({seen}), here is my answer to: {excerpt(user_text)}"
    if not user_text.strip():
        return "Nothing was asked."
    return f"You asked: {excerpt(user_text)} ({len(user_text.split())} words)."


class SchemaValueBuilder:
    """Builds a value valid against a JSON Schema, choosing input-derived values where it can.

    Order for each subschema: ``const``, ``enum`` (the entry found earliest in the user
    message, else the first), ``default``, ``examples``, then a value of the type.
    """

    def __init__(self, schema: dict[str, Any], *, user_text: str, answer: str):
        self.root = schema
        self.user_text = user_text.lower()
        self.answer = answer

    def build(self) -> Any:
        validator_class = jsonschema.validators.validator_for(self.root)
        try:
            validator_class.check_schema(self.root)
        except jsonschema.SchemaError as err:
            raise ProviderError(
                f"The output schema is not valid JSON Schema: {err.message}"
            ) from None
        value = self.value(self.root, "output")
        error = jsonschema.exceptions.best_match(validator_class(self.root).iter_errors(value))
        if error is not None:
            raise ProviderError(
                "The simulated provider cannot build an answer for this output schema: "
                f"{error.message}"
            )
        return value

    def value(self, schema: Any, name: str, index: int = 0) -> Any:
        if not isinstance(schema, dict):
            return None if schema is False else self.string({}, name, index)
        if "$ref" in schema:
            return self.value(self.resolve(schema["$ref"]), name, index)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self.pick(schema["enum"], index)
        if "default" in schema:
            return schema["default"]
        if schema.get("examples"):
            return schema["examples"][0]
        if "allOf" in schema:
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                is_ref = isinstance(part, dict) and "$ref" in part
                merged = merge(merged, self.resolve(part["$ref"]) if is_ref else part)
            return self.value(merged, name, index)
        for key in ("oneOf", "anyOf"):
            if key in schema:
                return self.first_valid(schema, schema[key], name, index)
        kind = schema_type(schema)
        if kind == "object":
            return self.object(schema)
        if kind == "array":
            return self.array(schema, name)
        if kind in ("integer", "number"):
            return self.number(schema, kind)
        if kind == "boolean":
            return False
        if kind == "null":
            return None
        return self.string(schema, name, index)

    def resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise ProviderError(f"The simulated provider only follows local $refs, not {ref!r}.")
        node: Any = self.root
        for part in ref.lstrip("#").strip("/").split("/"):
            if not part:
                continue
            part = part.replace("~1", "/").replace("~0", "~")
            node = node[int(part)] if isinstance(node, list) else node.get(part, {})
        return node

    def pick(self, options: list[Any], index: int = 0) -> Any:
        """Options named in the user message first (earliest mention first), then the rest."""
        if not options:
            return None
        found = []
        for position, option in enumerate(options):
            word = str(option).lower()
            match = re.search(rf"(?<!\w){re.escape(word)}(?!\w)", self.user_text) if word else None
            if match:
                found.append((match.start(), position))
        mentioned = [position for _, position in sorted(found)]
        order = mentioned + [p for p in range(len(options)) if p not in mentioned]
        return options[order[index % len(order)]]

    def first_valid(
        self, schema: dict[str, Any], branches: list[Any], name: str, index: int
    ) -> Any:
        base = {k: v for k, v in schema.items() if k not in ("oneOf", "anyOf")}
        candidates = [self.value(merge(base, b), name, index) for b in branches]
        # Carry the root's definitions so local $refs inside the branches still resolve.
        standalone = {k: self.root[k] for k in ("$defs", "definitions") if k in self.root}
        validator = jsonschema.validators.validator_for(self.root)({**standalone, **schema})
        for candidate in candidates:
            if validator.is_valid(candidate):
                return candidate
        return candidates[0] if candidates else None

    def object(self, schema: dict[str, Any]) -> dict[str, Any]:
        properties = schema.get("properties") or {}
        required = list(schema.get("required") or [])
        names = required + [n for n in properties if n not in required]
        if "maxProperties" in schema:
            names = names[: max(len(required), schema["maxProperties"])]
        extra = schema.get("additionalProperties")
        out = {}
        for prop in names:
            sub = properties.get(prop, extra if isinstance(extra, dict) else {})
            out[prop] = self.value(sub, prop)
        return out

    def array(self, schema: dict[str, Any], name: str) -> list[Any]:
        prefix = schema.get("prefixItems") or []
        minimum = schema.get("minItems", 0)
        count = max(minimum, len(prefix), 1)
        if "maxItems" in schema:
            count = min(count, schema["maxItems"])
        items = schema.get("items", {})
        return [self.value(prefix[i] if i < len(prefix) else items, name, i) for i in range(count)]

    def number(self, schema: dict[str, Any], kind: str) -> int | float:
        step = 1 if kind == "integer" else 0.5
        if "minimum" in schema:
            value = schema["minimum"]
        elif "exclusiveMinimum" in schema:
            value = schema["exclusiveMinimum"] + step
        elif "maximum" in schema:
            value = min(0, schema["maximum"])
        elif "exclusiveMaximum" in schema:
            value = min(0, schema["exclusiveMaximum"] - step)
        else:
            value = 0
        multiple = schema.get("multipleOf")
        if multiple:
            value = math.ceil(value / multiple) * multiple
        return math.ceil(value) if kind == "integer" else value

    def string(self, schema: dict[str, Any], name: str, index: int) -> str:
        fmt = schema.get("format")
        if fmt == "uuid":
            text = str(uuid.uuid5(uuid.NAMESPACE_URL, f"simulated:{name}:{self.user_text}:{index}"))
        elif fmt in FORMAT_VALUES:
            text = FORMAT_VALUES[fmt]
        elif any(word in name.lower() for word in ANSWER_NAMES):
            text = self.answer
        else:
            text = f"simulated {name}"
        if index and fmt not in FORMAT_VALUES:
            text = f"{text} {index + 1}"
        if "maxLength" in schema:
            text = text[: schema["maxLength"]]
        if len(text) < schema.get("minLength", 0):
            text = text.ljust(schema["minLength"], ".")
        return text


def schema_type(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind:
        return kind
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def merge(base: dict[str, Any], extra: Any) -> dict[str, Any]:
    """Shallow merge of two subschemas (properties and required are unioned)."""
    if not isinstance(extra, dict):
        return base
    out = {**base, **extra}
    if "properties" in base and "properties" in extra:
        out["properties"] = {**base["properties"], **extra["properties"]}
    if "required" in base and "required" in extra:
        out["required"] = list(dict.fromkeys([*base["required"], *extra["required"]]))
    return out
