"""Provider adapters, driven through the real openai and anthropic SDKs against loopback servers.

Each server is a scripted ``http.server`` on 127.0.0.1 that records the requests it
receives and answers with the OpenAI or Anthropic wire format, so the whole SDK path
(serialisation, HTTP, parsing, error classes) runs for real, offline.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest
from django.db import connection

from agents.choices import ProviderKind
from agents.models import ProviderConnection
from agents.providers.anthropic_provider import AnthropicAdapter
from agents.providers.base import (
    ChatResult,
    Message,
    ProviderError,
    ToolCallRequest,
    ToolSpec,
    cost_usd,
    get_adapter,
)
from agents.providers.openai_compat import OpenAIAdapter
from agents.providers.simulated import CHECK_MESSAGE, SimulatedAdapter
from tests.factories import TenantFactory

# Deliberately not shaped like a key, so only the exact-secret scrubbing can hide it.
API_KEY = "plainsecretvalue0042xyz"
PRICES = [{"name": "m-test", "input_per_mtok": 2.5, "output_per_mtok": 10.0}]
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather for a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)


# --- a scripted loopback server --------------------------------------------------------


@dataclasses.dataclass
class Reply:
    status: int = 200
    body: Any = None
    raw: bytes | None = None
    content_type: str = "application/json"
    delay: float = 0.0


@dataclasses.dataclass
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


class ScriptedServer:
    """Answers each request with the next scripted Reply and records what it received."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.received: list[Received] = []
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.answer()

            def do_POST(self) -> None:
                self.answer()

            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                server.received.append(
                    Received(
                        method=self.command,
                        path=parts.path,
                        query=parse_qs(parts.query),
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=json.loads(raw) if raw else None,
                    )
                )
                reply = (
                    server.replies.pop(0) if server.replies else Reply(599, {"error": "unscripted"})
                )
                if reply.delay:
                    server.release.wait(reply.delay)
                payload = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up (the timeout test)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def start(self) -> ScriptedServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = ScriptedServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def tenant(db):
    return TenantFactory()


@pytest.fixture
def make_provider(tenant):
    def make(kind: str, base_url: str = "", **fields: Any) -> ProviderConnection:
        fields.setdefault("api_key", API_KEY)
        fields.setdefault("models", PRICES)
        fields.setdefault("timeout_seconds", 5)
        slug = fields.pop("slug", f"{kind}-test")
        created = ProviderConnection.objects.unscoped().create(
            tenant=tenant, slug=slug, name=slug, kind=kind, base_url=base_url, **fields
        )
        # Read it back, so the key has been through encryption and decryption.
        return ProviderConnection.objects.unscoped().get(pk=created.pk)

    return make


def assert_no_key(err: ProviderError) -> None:
    for text in (err.message, str(err), repr(err), str(err.args)):
        assert API_KEY not in text


# --- OpenAI wire format ----------------------------------------------------------------


def completion(
    content: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    finish: str = "stop",
    prompt_tokens: int = 11,
    completion_tokens: int = 7,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "m-test",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def openai_error(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


@pytest.fixture
def openai_provider(server, make_provider):
    return make_provider(ProviderKind.OPENAI, f"{server.url}/v1", slug="oa")


@pytest.mark.django_db
def test_openai_plain_answer_maps_text_usage_and_cost(server, openai_provider):
    server.script(Reply(body=completion("Hello there.", prompt_tokens=1200, completion_tokens=300)))
    adapter = get_adapter(openai_provider)

    result = adapter.chat(
        model="m-test",
        messages=[Message("system", "Be brief."), Message("user", "Hi")],
        temperature=0.2,
        max_tokens=50,
    )

    assert isinstance(adapter, OpenAIAdapter)
    assert result == ChatResult(
        content="Hello there.",
        tool_calls=[],
        input_tokens=1200,
        output_tokens=300,
        model="m-test",
        latency_ms=result.latency_ms,
        stop_reason="end",
        simulated=False,
    )
    assert result.latency_ms > 0
    sent = server.received[0]
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.body["model"] == "m-test"
    assert sent.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert sent.body["temperature"] == 0.2
    assert sent.body["max_tokens"] == 50  # a non-OpenAI host gets the classic parameter
    assert "tools" not in sent.body
    # 1200 * 2.5 / 1e6 + 300 * 10 / 1e6
    assert cost_usd(openai_provider, result.model, 1200, 300) == pytest.approx(0.006)


@pytest.mark.django_db
def test_openai_tool_call_round_trip(server, openai_provider):
    server.script(
        Reply(
            body=completion(
                None,
                tool_calls=[
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
                finish="tool_calls",
            )
        ),
        Reply(body=completion("It is 3°C in Oslo.")),
    )
    adapter = get_adapter(openai_provider)
    conversation = [Message("user", "Weather in Oslo?")]

    first = adapter.chat(model="m-test", messages=conversation, tools=[WEATHER])

    assert first.stop_reason == "tool_calls"
    assert first.content == ""
    assert first.tool_calls == [ToolCallRequest("call_1", "get_weather", {"city": "Oslo"})]

    conversation += [
        Message("assistant", "", tool_calls=first.tool_calls),
        Message("tool", '{"temp_c": 3}', tool_call_id="call_1", name="get_weather"),
    ]
    final = adapter.chat(model="m-test", messages=conversation, tools=[WEATHER])

    assert final.content == "It is 3°C in Oslo."
    assert final.tool_calls == []
    assert server.received[0].body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": WEATHER.parameters,
            },
        }
    ]
    second = server.received[1].body["messages"]
    assert second[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
            }
        ],
    }
    assert second[2] == {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 3}'}


@pytest.mark.django_db
def test_openai_tool_arguments_that_are_not_json_are_a_retryable_error(server, openai_provider):
    broken = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Os'},
    }
    server.script(Reply(body=completion(None, tool_calls=[broken], finish="tool_calls")))

    with pytest.raises(ProviderError) as caught:
        get_adapter(openai_provider).chat(
            model="m-test", messages=[Message("user", "Weather?")], tools=[WEATHER]
        )

    assert "get_weather" in caught.value.message
    assert "not a JSON object" in caught.value.message
    assert caught.value.retryable is True


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("schema", "strict"),
    [
        (
            {
                "type": "object",
                "title": "Triage result",
                "properties": {"category": {"type": "string", "enum": ["billing", "bug"]}},
                "required": ["category"],
                "additionalProperties": False,
            },
            True,
        ),
        (
            {"type": "object", "properties": {"category": {"type": "string"}}},
            False,
        ),
    ],
)
def test_openai_structured_output_sends_json_schema(server, openai_provider, schema, strict):
    server.script(Reply(body=completion('```json\n{"category": "billing"}\n```')))

    result = get_adapter(openai_provider).chat(
        model="m-test", messages=[Message("user", "I was charged twice")], response_schema=schema
    )

    assert json.loads(result.content) == {"category": "billing"}
    jsonschema.validate(json.loads(result.content), schema)
    response_format = server.received[0].body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["schema"] == schema
    assert response_format["json_schema"]["strict"] is strict
    assert response_format["json_schema"]["name"] in ("Triage_result", "output")


@pytest.mark.django_db
def test_openai_test_connection_lists_models(server, make_provider):
    provider = make_provider(
        ProviderKind.OPENAI,
        f"{server.url}/v1",
        models=[{"name": "llama3"}, {"name": "missing-model"}],
    )
    server.script(
        Reply(
            body={
                "object": "list",
                "data": [
                    {"id": "llama3", "object": "model", "created": 1, "owned_by": "me"},
                    {"id": "qwen2", "object": "model", "created": 1, "owned_by": "me"},
                ],
            }
        )
    )

    check = get_adapter(provider).test_connection()

    assert check.ok is True
    assert check.models == ["llama3", "qwen2"]
    assert "2 models available" in check.message
    assert "missing-model" in check.message
    assert check.latency_ms > 0
    assert (server.received[0].method, server.received[0].path) == ("GET", "/v1/models")


OPENAI_ERRORS = [
    (
        401,
        openai_error(f"Incorrect API key provided: {API_KEY}", "invalid_request_error", "bad_key"),
        "The provider rejected the API key (HTTP 401). Check the key stored for provider 'oa'.",
        False,
    ),
    (
        403,
        openai_error(f"Key {API_KEY} lacks scope model.request", "permission_error"),
        "is not allowed to do this",
        False,
    ),
    (
        404,
        openai_error(
            "The model `m-test` does not exist", "invalid_request_error", "model_not_found"
        ),
        "does not know the model 'm-test' (HTTP 404)",
        False,
    ),
    (
        429,
        openai_error(f"Rate limit reached for {API_KEY}", "requests", "rate_limit_exceeded"),
        "rate-limiting provider 'oa' (HTTP 429)",
        True,
    ),
    (
        429,
        openai_error("You exceeded your current quota", "insufficient_quota", "insufficient_quota"),
        "run out of quota (HTTP 429)",
        False,
    ),
    (
        500,
        openai_error(f"Internal error while serving {API_KEY}", "server_error"),
        "server error (HTTP 500)",
        True,
    ),
    (
        503,
        {"error": "upstream unavailable"},
        "server error (HTTP 503)",
        True,
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("status", "body", "expected", "retryable"), OPENAI_ERRORS)
def test_openai_errors_are_plain_words_without_the_key(
    server, openai_provider, status, body, expected, retryable
):
    server.script(Reply(status, body))

    with pytest.raises(ProviderError) as caught:
        get_adapter(openai_provider).chat(model="m-test", messages=[Message("user", "Hi")])

    err = caught.value
    assert expected in err.message
    assert err.status == status
    assert err.retryable is retryable
    assert str(err) == err.message
    assert_no_key(err)
    assert err.__suppress_context__ is True  # the SDK error (holding the request) stays out
    assert len(server.received) == 1  # max_retries=0: the engine owns retries


@pytest.mark.django_db
def test_openai_connection_refused(make_provider, closed_port):
    provider = make_provider(ProviderKind.OPENAI, f"http://127.0.0.1:{closed_port}/v1", slug="oa")

    with pytest.raises(ProviderError) as caught:
        get_adapter(provider).chat(model="m-test", messages=[Message("user", "Hi")])

    err = caught.value
    # The same words as for a reset, a non-HTTP server or a TLS mismatch: no port scanning.
    assert err.message == (
        f"Could not reach provider 'oa' at http://127.0.0.1:{closed_port}: no HTTP answer (the "
        "connection failed, was closed or timed out)."
    )
    assert (err.status, err.retryable) == (None, True)
    assert_no_key(err)


@pytest.mark.django_db
def test_openai_timeout(server, openai_provider):
    server.script(Reply(body=completion("too late"), delay=5))
    started = time.monotonic()

    with pytest.raises(ProviderError) as caught:
        get_adapter(openai_provider).chat(
            model="m-test", messages=[Message("user", "Hi")], timeout=0.3
        )

    assert time.monotonic() - started < 3
    assert "did not answer in time" in caught.value.message
    assert caught.value.retryable is True
    assert_no_key(caught.value)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "reply",
    [
        Reply(raw=b'{"id": "chatcmpl-1", "choices": [', content_type="application/json"),
        Reply(raw=b"<html><body>Welcome to nginx</body></html>", content_type="text/html"),
    ],
)
def test_openai_answer_that_is_not_json(server, openai_provider, reply):
    server.script(reply)

    with pytest.raises(ProviderError) as caught:
        get_adapter(openai_provider).chat(model="m-test", messages=[Message("user", "Hi")])

    assert "is not the JSON of an OpenAI-compatible API" in caught.value.message
    assert "Check the base URL" in caught.value.message


@pytest.mark.django_db
def test_openai_test_connection_reports_failure_without_raising(server, openai_provider):
    server.script(Reply(401, openai_error(f"Incorrect API key provided: {API_KEY}", "auth")))

    check = get_adapter(openai_provider).test_connection()

    assert check.ok is False
    assert check.models == []
    assert check.message == (
        "The provider rejected the API key (HTTP 401). Check the key stored for provider 'oa'."
    )


@pytest.mark.django_db
def test_openai_key_from_environment_variable(server, make_provider, monkeypatch):
    monkeypatch.setenv("CP_TEST_OPENAI_KEY", "key-from-env-1234")
    provider = make_provider(
        ProviderKind.OPENAI, f"{server.url}/v1", api_key="", api_key_env="CP_TEST_OPENAI_KEY"
    )
    server.script(Reply(body=completion("ok")))

    get_adapter(provider).chat(model="m-test", messages=[Message("user", "Hi")])

    assert server.received[0].headers["authorization"] == "Bearer key-from-env-1234"


@pytest.mark.django_db
def test_openai_local_server_without_key_still_works(server, make_provider):
    provider = make_provider(ProviderKind.OPENAI, f"{server.url}/v1", api_key="")
    server.script(Reply(body=completion("local answer")))

    result = get_adapter(provider).chat(model="llama3", messages=[Message("user", "Hi")])

    assert result.content == "local answer"
    assert server.received[0].headers["authorization"] == "Bearer no-key"


@pytest.mark.django_db
def test_missing_environment_variable_is_named(make_provider, monkeypatch):
    monkeypatch.delenv("CP_TEST_UNSET_KEY", raising=False)
    provider = make_provider(
        ProviderKind.OPENAI, "http://127.0.0.1:9/v1", api_key="", api_key_env="CP_TEST_UNSET_KEY"
    )

    with pytest.raises(ProviderError) as caught:
        get_adapter(provider).chat(model="m-test", messages=[Message("user", "Hi")])
    check = get_adapter(provider).test_connection()

    assert "CP_TEST_UNSET_KEY" in caught.value.message
    assert "not set" in caught.value.message
    assert check.ok is False
    assert "CP_TEST_UNSET_KEY" in check.message


@pytest.mark.django_db
def test_api_key_is_encrypted_at_rest(make_provider):
    provider = make_provider(ProviderKind.OPENAI, "http://127.0.0.1:9/v1")

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT api_key FROM {ProviderConnection._meta.db_table} WHERE id = %s",
            [provider.pk],
        )
        stored = cursor.fetchone()[0]

    assert provider.api_key == API_KEY
    assert API_KEY not in stored


# --- Anthropic wire format -------------------------------------------------------------


def anthropic_message(
    content: list[dict[str, Any]], stop_reason: str = "end_turn", **usage: int
) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 20, "output_tokens": 9, **usage},
    }


def anthropic_error(status_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": status_type, "message": message}}


@pytest.fixture
def anthropic_provider(server, make_provider):
    return make_provider(
        ProviderKind.ANTHROPIC,
        server.url,
        slug="ant",
        models=[{"name": "claude-test", "input_per_mtok": 3, "output_per_mtok": 15}],
    )


@pytest.mark.django_db
def test_anthropic_plain_answer_maps_text_usage_and_cost(server, anthropic_provider):
    server.script(
        Reply(
            body=anthropic_message(
                [{"type": "text", "text": "Hello"}, {"type": "text", "text": " there."}],
                input_tokens=1000,
                output_tokens=200,
                cache_read_input_tokens=500,
            )
        )
    )
    adapter = get_adapter(anthropic_provider)

    result = adapter.chat(
        model="claude-test",
        messages=[
            Message("system", "Be brief."),
            Message("system", "Answer in English."),
            Message("user", "Hi"),
        ],
        max_tokens=64,
    )

    assert isinstance(adapter, AnthropicAdapter)
    assert (result.content, result.stop_reason, result.model) == (
        "Hello there.",
        "end",
        "claude-test",
    )
    assert (result.input_tokens, result.output_tokens) == (1500, 200)
    assert result.simulated is False
    sent = server.received[0]
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert API_KEY in sent.headers.get("authorization", "") + sent.headers.get("x-api-key", "")
    assert "anthropic-version" in sent.headers
    assert sent.body["system"] == "Be brief.\n\nAnswer in English."
    assert sent.body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert sent.body["max_tokens"] == 64
    # 1500 * 3 / 1e6 + 200 * 15 / 1e6
    assert cost_usd(anthropic_provider, "claude-test", 1500, 200) == pytest.approx(0.0075)


@pytest.mark.django_db
def test_anthropic_tool_call_round_trip(server, anthropic_provider):
    server.script(
        Reply(
            body=anthropic_message(
                [
                    {"type": "text", "text": "Let me look."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Oslo"},
                    },
                ],
                stop_reason="tool_use",
            )
        ),
        Reply(body=anthropic_message([{"type": "text", "text": "3°C in Oslo."}])),
    )
    adapter = get_adapter(anthropic_provider)
    conversation = [Message("system", "You are a weather bot."), Message("user", "Oslo?")]

    first = adapter.chat(model="claude-test", messages=conversation, tools=[WEATHER])

    assert first.stop_reason == "tool_calls"
    assert first.content == "Let me look."
    assert first.tool_calls == [ToolCallRequest("toolu_1", "get_weather", {"city": "Oslo"})]

    conversation += [
        Message("assistant", first.content, tool_calls=first.tool_calls),
        Message("tool", '{"temp_c": 3}', tool_call_id="toolu_1", name="get_weather"),
    ]
    final = adapter.chat(model="claude-test", messages=conversation, tools=[WEATHER])

    assert (final.content, final.tool_calls, final.stop_reason) == ("3°C in Oslo.", [], "end")
    assert server.received[0].body["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "input_schema": WEATHER.parameters,
        }
    ]
    assert "tool_choice" not in server.received[0].body
    second = server.received[1].body
    assert second["system"] == "You are a weather bot."
    assert second["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Oslo?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": '{"temp_c": 3}'}
            ],
        },
    ]


TRIAGE_SCHEMA = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": ["billing", "bug", "other"]},
        "urgent": {"type": "boolean"},
    },
    "required": ["category", "urgent"],
}


@pytest.mark.django_db
def test_anthropic_structured_output_through_a_forced_tool(server, anthropic_provider):
    server.script(
        Reply(
            body=anthropic_message(
                [
                    {
                        "type": "tool_use",
                        "id": "toolu_9",
                        "name": "final_answer",
                        "input": {"category": "billing", "urgent": False},
                    }
                ],
                stop_reason="tool_use",
            )
        )
    )

    result = get_adapter(anthropic_provider).chat(
        model="claude-test",
        messages=[Message("user", "I was charged twice")],
        response_schema=TRIAGE_SCHEMA,
    )

    assert json.loads(result.content) == {"category": "billing", "urgent": False}
    jsonschema.validate(json.loads(result.content), TRIAGE_SCHEMA)
    assert (result.tool_calls, result.stop_reason) == ([], "end")
    body = server.received[0].body
    assert body["tool_choice"] == {"type": "tool", "name": "final_answer"}
    assert [t["name"] for t in body["tools"]] == ["final_answer"]
    assert body["tools"][0]["input_schema"] == TRIAGE_SCHEMA


@pytest.mark.django_db
def test_anthropic_structured_output_alongside_tools_and_non_object_schema(
    server, anthropic_provider
):
    schema = {"type": "array", "items": {"type": "string"}}
    server.script(
        Reply(
            body=anthropic_message(
                [
                    {
                        "type": "tool_use",
                        "id": "toolu_2",
                        "name": "final_answer",
                        "input": {"output": ["Oslo", "Bergen"]},
                    }
                ],
                stop_reason="tool_use",
            )
        )
    )

    result = get_adapter(anthropic_provider).chat(
        model="claude-test",
        messages=[Message("user", "Two Norwegian cities")],
        tools=[WEATHER],
        response_schema=schema,
    )

    assert json.loads(result.content) == ["Oslo", "Bergen"]
    body = server.received[0].body
    assert body["tool_choice"] == {"type": "any"}
    assert [t["name"] for t in body["tools"]] == ["get_weather", "final_answer"]
    assert body["tools"][1]["input_schema"] == {
        "type": "object",
        "properties": {"output": schema},
        "required": ["output"],
    }


@pytest.mark.django_db
def test_anthropic_test_connection_makes_one_cheap_call(server, anthropic_provider):
    server.script(
        Reply(
            body={
                "data": [
                    {
                        "id": "claude-test",
                        "type": "model",
                        "display_name": "Claude Test",
                        "created_at": "2025-01-01T00:00:00Z",
                        "lifecycle": "active",
                    }
                ],
                "has_more": True,
                "first_id": "claude-test",
                "last_id": "claude-test",
            }
        )
    )

    check = get_adapter(anthropic_provider).test_connection()

    assert check.ok is True
    assert check.models == ["claude-test"]
    assert "the API key works" in check.message
    assert len(server.received) == 1
    assert server.received[0].path == "/v1/models"
    assert server.received[0].query["limit"] == ["1"]


ANTHROPIC_ERRORS = [
    (
        401,
        anthropic_error("authentication_error", f"invalid x-api-key {API_KEY}"),
        "The provider rejected the API key (HTTP 401). Check the key stored for provider 'ant'.",
        False,
    ),
    (
        403,
        anthropic_error("permission_error", f"{API_KEY} may not use this model"),
        "is not allowed to do this",
        False,
    ),
    (
        404,
        anthropic_error("not_found_error", "model: claude-test"),
        "does not know the model 'claude-test' (HTTP 404)",
        False,
    ),
    (
        429,
        anthropic_error("rate_limit_error", "Number of request tokens has exceeded your limit"),
        "rate-limiting provider 'ant' (HTTP 429)",
        True,
    ),
    (
        500,
        anthropic_error("api_error", f"Internal error {API_KEY}"),
        "server error (HTTP 500)",
        True,
    ),
    (529, anthropic_error("overloaded_error", "Overloaded"), "overloaded (HTTP 529)", True),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("status", "body", "expected", "retryable"), ANTHROPIC_ERRORS)
def test_anthropic_errors_are_plain_words_without_the_key(
    server, anthropic_provider, status, body, expected, retryable
):
    server.script(Reply(status, body))

    with pytest.raises(ProviderError) as caught:
        get_adapter(anthropic_provider).chat(model="claude-test", messages=[Message("user", "Hi")])

    err = caught.value
    assert expected in err.message
    assert (err.status, err.retryable) == (status, retryable)
    assert str(err) == err.message
    assert_no_key(err)
    assert len(server.received) == 1


@pytest.mark.django_db
def test_anthropic_connection_refused(make_provider, closed_port):
    provider = make_provider(ProviderKind.ANTHROPIC, f"http://127.0.0.1:{closed_port}", slug="ant")

    with pytest.raises(ProviderError) as caught:
        get_adapter(provider).chat(model="claude-test", messages=[Message("user", "Hi")])

    assert "Could not reach provider 'ant'" in caught.value.message
    assert "no HTTP answer (the connection failed, was closed or timed out)" in (
        caught.value.message
    )
    assert caught.value.retryable is True
    assert_no_key(caught.value)


@pytest.mark.django_db
def test_anthropic_timeout(server, anthropic_provider):
    server.script(Reply(body=anthropic_message([{"type": "text", "text": "late"}]), delay=5))
    started = time.monotonic()

    with pytest.raises(ProviderError) as caught:
        get_adapter(anthropic_provider).chat(
            model="claude-test", messages=[Message("user", "Hi")], timeout=0.3
        )

    assert time.monotonic() - started < 3
    assert "did not answer in time" in caught.value.message
    assert caught.value.retryable is True


@pytest.mark.django_db
def test_anthropic_without_key_says_so(server, make_provider):
    provider = make_provider(ProviderKind.ANTHROPIC, server.url, api_key="", slug="ant")

    with pytest.raises(ProviderError) as caught:
        get_adapter(provider).chat(model="claude-test", messages=[Message("user", "Hi")])

    assert caught.value.message.startswith("No API key for provider 'ant'")
    assert server.received == []
    assert get_adapter(provider).test_connection().ok is False


# --- simulated -------------------------------------------------------------------------


@pytest.fixture
def simulated(make_provider):
    return make_provider(ProviderKind.SIMULATED, api_key="", models=[{"name": "sim-1"}])


SCRIPTED_SYSTEM = "\n".join(
    [
        "You are a support agent.",
        'SIMULATE call get_weather {"city": "Oslo"}',
        'SIMULATE call delete_everything {"really": true}',
    ]
)


@pytest.mark.django_db
def test_simulated_is_deterministic_and_labelled(simulated):
    adapter = get_adapter(simulated)
    ask = [Message("system", "Be nice."), Message("user", "Where is my parcel number 42?")]

    first = adapter.chat(model="sim-1", messages=ask)
    again = adapter.chat(model="sim-1", messages=ask)
    other = adapter.chat(model="sim-1", messages=[Message("user", "Something else")])

    assert isinstance(adapter, SimulatedAdapter)
    assert first.content.startswith("[simulated sim-1] ")
    assert "Where is my parcel number 42?" in first.content
    assert (first.content, first.input_tokens, first.output_tokens) == (
        again.content,
        again.input_tokens,
        again.output_tokens,
    )
    assert other.content != first.content
    assert first.simulated is True
    assert first.stop_reason == "end"
    assert first.input_tokens > 0
    assert first.output_tokens > 0
    assert first.latency_ms > 0


@pytest.mark.django_db
def test_simulated_tool_script_round_trip(simulated):
    adapter = get_adapter(simulated)
    conversation = [Message("system", SCRIPTED_SYSTEM), Message("user", "Weather in Oslo?")]

    first = adapter.chat(model="sim-1", messages=conversation, tools=[WEATHER])
    again = adapter.chat(model="sim-1", messages=conversation, tools=[WEATHER])

    # delete_everything is scripted but not offered, so it is not called.
    assert [(c.name, c.arguments) for c in first.tool_calls] == [("get_weather", {"city": "Oslo"})]
    assert first.tool_calls == again.tool_calls
    assert first.stop_reason == "tool_calls"
    assert first.simulated is True

    conversation += [
        Message("assistant", "", tool_calls=first.tool_calls),
        Message("tool", '{"temp_c": 3, "sky": "overcast"}', tool_call_id=first.tool_calls[0].id),
    ]
    final = adapter.chat(model="sim-1", messages=conversation, tools=[WEATHER])

    assert final.tool_calls == []
    assert final.stop_reason == "end"
    assert final.content.startswith("[simulated sim-1] ")
    assert "get_weather" in final.content
    assert '"sky": "overcast"' in final.content


@pytest.mark.django_db
def test_simulated_without_offered_tools_answers_in_text(simulated):
    result = get_adapter(simulated).chat(
        model="sim-1", messages=[Message("system", SCRIPTED_SYSTEM), Message("user", "Hi")]
    )

    assert result.tool_calls == []
    assert result.content.startswith("[simulated sim-1] ")


@pytest.mark.django_db
def test_simulated_bad_script_line_is_a_plain_error(simulated):
    with pytest.raises(ProviderError) as caught:
        get_adapter(simulated).chat(
            model="sim-1",
            messages=[Message("system", "SIMULATE call get_weather {city: Oslo}")],
            tools=[WEATHER],
        )

    assert "SIMULATE call get_weather" in caught.value.message
    assert "JSON object" in caught.value.message


RICH_SCHEMA = {
    "type": "object",
    "$defs": {
        "contact": {
            "type": "object",
            "properties": {"email": {"type": "string", "format": "email"}},
            "required": ["email"],
            "additionalProperties": False,
        }
    },
    "properties": {
        "category": {"type": "string", "enum": ["general", "billing", "shipping"]},
        "priority": {"type": "integer", "minimum": 1, "maximum": 5},
        "confidence": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "summary": {"type": "string", "minLength": 5, "maxLength": 80},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "uniqueItems": True},
        "escalate": {"type": "boolean"},
        "version": {"const": 2},
        "contact": {"$ref": "#/$defs/contact"},
        "channel": {"anyOf": [{"type": "null"}, {"type": "string", "enum": ["email", "phone"]}]},
        "language": {"type": "string", "default": "en"},
        "code": {"type": "string", "pattern": "^[A-Z]{3}$", "examples": ["ABC"]},
    },
    "required": ["category", "priority", "summary", "tags", "version", "contact"],
    "additionalProperties": False,
}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("question", "category"),
    [
        ("My shipping is late, and billing is wrong", "shipping"),
        ("I have a billing question", "billing"),
        ("Hello there", "general"),
    ],
)
def test_simulated_structured_output_is_valid_and_derived_from_input(simulated, question, category):
    adapter = get_adapter(simulated)
    messages = [Message("user", question)]

    result = adapter.chat(model="sim-1", messages=messages, response_schema=RICH_SCHEMA)
    again = adapter.chat(model="sim-1", messages=messages, response_schema=RICH_SCHEMA)

    value = json.loads(result.content)
    jsonschema.validate(value, RICH_SCHEMA, format_checker=jsonschema.FormatChecker())
    assert value["category"] == category
    assert value["version"] == 2
    assert value["language"] == "en"
    assert result.content == again.content
    assert result.simulated is True
    assert result.tool_calls == []


@pytest.mark.django_db
def test_simulated_unsatisfiable_schema_is_a_plain_error(simulated):
    schema = {"type": "string", "pattern": "^[0-9]+$"}

    with pytest.raises(ProviderError) as caught:
        get_adapter(simulated).chat(
            model="sim-1", messages=[Message("user", "Hi")], response_schema=schema
        )

    assert "cannot build an answer for this output schema" in caught.value.message


@pytest.mark.django_db
def test_simulated_test_connection(simulated):
    check = get_adapter(simulated).test_connection()

    assert check.ok is True
    assert (
        check.message
        == CHECK_MESSAGE
        == ("Simulated provider: answers offline and deterministically")
    )
    assert check.models == ["sim-1"]


# --- selection and cost ----------------------------------------------------------------


@pytest.mark.django_db
def test_get_adapter_refuses_an_unknown_kind(make_provider):
    provider = make_provider(ProviderKind.SIMULATED)
    provider.kind = "carrier-pigeon"

    with pytest.raises(ProviderError) as caught:
        get_adapter(provider)

    assert "unknown kind 'carrier-pigeon'" in caught.value.message


@pytest.mark.django_db
def test_cost_of_an_unpriced_model_is_zero(make_provider):
    provider = make_provider(ProviderKind.SIMULATED)

    assert cost_usd(provider, "m-test", 2_000_000, 1_000_000) == pytest.approx(15.0)
    assert cost_usd(provider, "not-listed", 2_000_000, 1_000_000) == 0.0
