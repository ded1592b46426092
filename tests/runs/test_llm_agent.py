"""LLM agent steps, managers and handoffs, driven through real providers.

The simulated provider scripts tool calls with ``SIMULATE call`` lines; the OpenAI and
Anthropic paths use the official SDKs against the scripted loopback server of
``tests/agents/test_providers.py``. Registry objects come from the services; tools really
run (tickets are written to PostgreSQL).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from typing import Any

import pytest

from agents.models import Ticket
from agents.providers.base import Message, cost_usd
from agents.services.tools import tool_grant_create
from controlplane import context
from policies.decision import Decision, PolicyRequest, decide
from runs.execution.calls import AgentCall, AgentResult, authorize_invocation
from runs.execution.conversation import messages_to_json
from runs.execution.llm import ENGINE_TOOL_NAMES, run_llm_agent
from runs.execution.orchestration import run_handoff, run_manager
from runs.execution.outcomes import StepCancelled, StepFailure
from tests.agents.registry_factories import make_agent, make_provider, make_tool
from tests.agents.test_providers import (
    Reply,
    ScriptedServer,
    anthropic_message,
    completion,
    openai_error,
)
from tests.factories import TenantFactory

OPENAI_PRICES = [{"name": "m-test", "input_per_mtok": 2.5, "output_per_mtok": 10.0}]
ANTHROPIC_PRICES = [{"name": "claude-test", "input_per_mtok": 3, "output_per_mtok": 15}]
TRIAGE_SCHEMA = {
    "type": "object",
    "properties": {
        "category": {"enum": ["billing", "bug", "other"]},
        "summary": {"type": "string"},
    },
    "required": ["category", "summary"],
    "additionalProperties": False,
}
_run_ids = itertools.count(9000)


# --- harness ---------------------------------------------------------------------------


@dataclasses.dataclass
class Harness:
    """What a call emitted and which policy questions it asked."""

    events: list[tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=list)
    requests: list[PolicyRequest] = dataclasses.field(default_factory=list)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [payload for type_, payload in self.events if type_ == kind]

    def types(self) -> list[str]:
        return [type_ for type_, _ in self.events]

    def tokens(self) -> tuple[int, int, float]:
        calls = self.of("model.call")
        return (
            sum(c["input_tokens"] for c in calls),
            sum(c["output_tokens"] for c in calls),
            sum(c["cost_usd"] for c in calls),
        )


def make_call(
    tenant: Any,
    agent: Any,
    step_input: Any,
    *,
    policy: Any = decide,
    run_id: int | None = None,
    step_key: str = "triage",
    run_context: dict[str, Any] | None = None,
    memory: dict[str, Any] | None = None,
    deadline: float | None = None,
    check_cancel: Any = None,
    harness: Harness | None = None,
) -> tuple[AgentCall, Harness]:
    """An AgentCall as the runner builds it: emit and policy record into a Harness."""
    harness = harness or Harness()
    counter = itertools.count()

    def ask(request: PolicyRequest) -> Decision:
        harness.requests.append(request)
        return policy(request)

    call = AgentCall(
        tenant=tenant,
        run_id=run_id if run_id is not None else next(_run_ids),
        step_key=step_key,
        agent=agent,
        version=agent.current_version,
        input=step_input,
        run_input={"ticket": step_input},
        run_context=run_context if run_context is not None else {},
        memory=memory if memory is not None else {},
        emit=lambda kind, payload: harness.events.append((kind, payload)),
        policy=ask,
        next_call_index=lambda: next(counter),
        check_cancel=check_cancel or (lambda: None),
        deadline=deadline,
    )
    return call, harness


def invoke_llm(call: AgentCall) -> AgentResult:
    """What the runner's ``invoke`` does for an llm agent: the policy gate, then the loop."""
    authorize_invocation(call)
    return run_llm_agent(call)


def deny(action: str, effect: str = "deny", reason: str = "frozen by the test"):
    """A policy that refuses ``action`` with ``effect`` and allows everything else."""

    def policy(request: PolicyRequest) -> Decision:
        if request.action == action:
            return Decision(effect=effect, reason=reason, rule="test-rule")
        return decide(request)

    return policy


def tool_results(result: AgentResult) -> list[dict[str, Any]]:
    return [json.loads(m.content) for m in result.messages if m.role == "tool"]


def tool_call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


@pytest.fixture
def tenant(db):
    return TenantFactory()


@pytest.fixture
def in_tenant(tenant):
    with context.tenant_context(tenant):
        yield tenant


@pytest.fixture
def sim(in_tenant):
    return make_provider(in_tenant, slug="sim")


@pytest.fixture
def server():
    srv = ScriptedServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def oa(in_tenant, server):
    return make_provider(
        in_tenant,
        slug="oa",
        kind="openai",
        base_url=f"{server.url}/v1",
        api_key="loopback-key-123",
        models=OPENAI_PRICES,
        timeout_seconds=5,
    )


@pytest.fixture
def ticket_tool(in_tenant):
    tool = make_tool(in_tenant, slug="open-ticket", builtin="ticket_create")
    with context.system_context("tests", tenant=in_tenant):
        tool_grant_create(tool=tool, agent_tag="support")
    return tool


def sim_agent(tenant, slug: str, prompt: str, **config: Any):
    return make_agent(
        tenant,
        slug=slug,
        tags=["support"],
        config={"provider": "sim", "model": "sim-1", "system_prompt": prompt, **config},
    )


def oa_agent(tenant, slug: str, prompt: str = "You are helpful.", **config: Any):
    return make_agent(
        tenant,
        slug=slug,
        tags=["support"],
        config={"provider": "oa", "model": "m-test", "system_prompt": prompt, **config},
    )


# --- plain answers ---------------------------------------------------------------------


def test_plain_answer_simulated_records_usage_cost_and_policy(in_tenant, sim):
    agent = sim_agent(in_tenant, "helper", "You help customers.")
    call, h = make_call(in_tenant, agent, {"question": "Where is my refund?"})

    result = invoke_llm(call)

    assert result.output.startswith("[simulated sim-1] You asked:")
    assert '"Where is my refund?"' in result.output
    assert [m.role for m in result.messages] == ["user", "assistant"]
    assert result.messages[0].content == '{\n  "question": "Where is my refund?"\n}'
    (event,) = h.of("model.call")
    assert event["agent"] == "helper"
    assert event["provider"] == "sim"
    assert event["simulated"] is True
    assert event["tool_calls"] == []
    assert event["input_tokens"] > 0 and event["output_tokens"] > 0
    expected = cost_usd(sim, "sim-1", event["input_tokens"], event["output_tokens"])
    assert event["cost_usd"] == pytest.approx(expected) and expected > 0
    assert (result.input_tokens, result.output_tokens) == (
        event["input_tokens"],
        event["output_tokens"],
    )
    assert result.cost_usd == pytest.approx(expected)
    assert [r.action for r in h.requests] == ["invoke_agent", "call_model"]
    assert h.requests[1].model == "sim-1"
    assert h.requests[1].agent_tags == ("support",)
    assert h.requests[1].run_id == call.run_id


def test_plain_answer_through_openai_sdk_offers_tools_and_prices_the_call(in_tenant, oa, server):
    agent = oa_agent(in_tenant, "writer", "Be brief.", temperature=0.3, max_tokens=99)
    server.script(Reply(body=completion("Hello there.", prompt_tokens=1200, completion_tokens=300)))
    call, h = make_call(in_tenant, agent, "Say hello")

    result = run_llm_agent(call)

    assert result.output == "Hello there."
    sent = server.received[0].body
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello"},
    ]
    assert sent["temperature"] == 0.3 and sent["max_tokens"] == 99
    assert not sent.get("tools")  # no engine tools unless builtin_tools grants them
    assert "response_format" not in sent
    (event,) = h.of("model.call")
    assert event["simulated"] is False and event["provider"] == "oa"
    assert event["stop_reason"] == "end" and event["content"] == "Hello there."
    assert event["latency_ms"] > 0
    assert event["cost_usd"] == pytest.approx(0.006)  # 1200 * 2.5 / 1e6 + 300 * 10 / 1e6
    assert (result.input_tokens, result.output_tokens) == (1200, 300)
    assert result.cost_usd == pytest.approx(0.006)


# --- tools -----------------------------------------------------------------------------


def test_ticket_tool_round_trip_is_idempotent_when_the_step_reruns(in_tenant, sim, ticket_tool):
    agent = sim_agent(
        in_tenant,
        "triager",
        'You triage.\nSIMULATE call open-ticket {"title": "Printer on fire", "priority": "high"}',
    )
    assert agent.current_version.tools == [{"id": ticket_tool.pk, "slug": "open-ticket"}]
    call, h = make_call(in_tenant, agent, "The printer is on fire", run_id=4242)

    first = run_llm_agent(call)

    tickets = Ticket.objects.for_tenant(in_tenant)
    assert tickets.count() == 1
    ticket = tickets.get()
    assert (ticket.title, ticket.priority) == ("Printer on fire", "high")
    assert ticket.idempotency_key == "run-4242-step-triage-call-0"
    (event,) = h.of("tool.call")
    assert event["tool"] == "open-ticket" and event["kind"] == "registry"
    assert event["arguments"] == {"title": "Printer on fire", "priority": "high"}
    assert event["result"]["created"] is True
    assert event["result"]["ticket"]["number"] == ticket.number
    assert event["idempotency_key"] == "run-4242-step-triage-call-0"
    assert (event["policy"], event["risk"]) == ("allow", "write")
    assert h.types() == ["model.call", "tool.call", "model.call"]
    assert "open-ticket returned" in first.output
    assert [m.role for m in first.messages] == ["user", "assistant", "tool", "assistant"]
    assert tool_results(first)[0]["ticket"]["title"] == "Printer on fire"
    call_tool = [r for r in h.requests if r.action == "call_tool"]
    assert len(call_tool) == 1
    assert (call_tool[0].tool, call_tool[0].risk) == ("open-ticket", "write")
    assert call_tool[0].arguments == {"title": "Printer on fire", "priority": "high"}

    # The same step again (a retry): a fresh call counter, same run and step -> same key.
    again, h2 = make_call(in_tenant, agent, "The printer is on fire", run_id=4242)
    run_llm_agent(again)

    assert tickets.count() == 1
    (replayed,) = h2.of("tool.call")
    assert replayed["idempotency_key"] == "run-4242-step-triage-call-0"
    assert replayed["result"]["created"] is False
    assert replayed["result"]["ticket"]["number"] == ticket.number

    # Another step of the same run is another side effect.
    other, _ = make_call(
        in_tenant, agent, "The printer is on fire", run_id=4242, step_key="escalate"
    )
    run_llm_agent(other)
    assert tickets.count() == 2


def test_context_and_memory_tools_read_and_write_the_call_dicts(in_tenant, sim):
    prompt = "\n".join(
        [
            "You remember things.",
            'SIMULATE call context_get {"key": "order"}',
            'SIMULATE call context_set {"key": "customer", "value": {"tier": "gold"}}',
            'SIMULATE call memory_set {"key": "last_topic", "value": "refunds"}',
            'SIMULATE call memory_get {"key": "greeting"}',
            'SIMULATE call context_set {"key": "broken"}',
        ]
    )
    agent = sim_agent(in_tenant, "rememberer", prompt, builtin_tools=["context", "memory"])
    call, h = make_call(
        in_tenant, agent, "hi", run_context={"order": 42}, memory={"greeting": "hello"}
    )

    result = run_llm_agent(call)

    assert result.context_updates == {"customer": {"tier": "gold"}}
    assert call.run_context == {"order": 42, "customer": {"tier": "gold"}}
    assert call.memory == {"greeting": "hello", "last_topic": "refunds"}
    answers = tool_results(result)
    assert answers[0] == {"key": "order", "found": True, "value": 42}
    assert answers[1] == {"key": "customer", "saved": True}
    assert answers[3] == {"key": "greeting", "found": True, "value": "hello"}
    assert answers[4]["code"] == "invalid_arguments"
    assert "'value' is a required property" in answers[4]["error"]
    events = h.of("tool.call")
    assert [e["tool"] for e in events] == [
        "context_get",
        "context_set",
        "memory_set",
        "memory_get",
        "context_set",
    ]
    assert all(e["kind"] == "builtin" and e["idempotency_key"] is None for e in events)
    assert "error" in events[4] and "result" not in events[4]
    # Engine tools pass the decision point like any tool (no call index used: no side effect
    # outside the run), with the risk of what they do.
    assert [e["policy"] for e in events] == ["allow"] * 5
    assert [e["risk"] for e in events] == ["read", "write", "write", "read", "write"]
    asked = [(r.action, r.tool, r.risk) for r in h.requests]
    assert asked == [
        ("call_model", None, None),
        ("call_tool", "context_get", "read"),
        ("call_tool", "context_set", "write"),
        ("call_tool", "memory_set", "write"),
        ("call_tool", "memory_get", "read"),
        ("call_tool", "context_set", "write"),
        ("call_model", None, None),
    ]
    assert h.requests[3].arguments == {"key": "last_topic", "value": "refunds"}


def test_engine_tools_are_offered_only_when_granted(in_tenant, oa, server):
    for slug, granted, offered in (
        ("plain", [], []),
        ("ctx", ["context"], ["context_get", "context_set"]),
        ("mem", ["memory"], ["memory_get", "memory_set"]),
        ("both", ["memory", "context"], list(ENGINE_TOOL_NAMES)),
    ):
        agent = oa_agent(in_tenant, slug, builtin_tools=granted)
        server.script(Reply(body=completion("ok")))
        invoke_llm(make_call(in_tenant, agent, "hi")[0])
        sent = server.received[-1].body.get("tools") or []
        assert [t["function"]["name"] for t in sent] == offered, granted


def test_a_policy_can_deny_an_engine_tool(in_tenant, sim):
    prompt = "\n".join(
        [
            'SIMULATE call memory_set {"key": "card", "value": "4111 1111 1111 1111"}',
            'SIMULATE call memory_get {"key": "card"}',
        ]
    )
    agent = sim_agent(in_tenant, "hoarder", prompt, builtin_tools=["memory"])

    def no_memory_writes(request: PolicyRequest) -> Decision:
        if request.action == "call_tool" and request.risk == "write":
            return Decision(effect="deny", reason="nothing is remembered")
        return decide(request)

    call, h = make_call(in_tenant, agent, "hi", policy=no_memory_writes)
    result = invoke_llm(call)

    assert call.memory == {}
    denied, read = h.of("tool.call")
    assert (denied["tool"], denied["policy"]) == ("memory_set", "deny")
    assert denied["error"]["code"] == "policy_denied"
    assert "nothing is remembered" in denied["error"]["error"]
    assert (read["tool"], read["policy"], read["result"]["found"]) == ("memory_get", "allow", False)
    assert tool_results(result)[0]["code"] == "policy_denied"


def test_denied_tool_call_is_an_error_the_model_recovers_from(in_tenant, oa, server, ticket_tool):
    agent = oa_agent(in_tenant, "triager")
    server.script(
        Reply(
            body=completion(
                None,
                tool_calls=[tool_call("call_1", "open-ticket", {"title": "Printer on fire"})],
                finish="tool_calls",
            )
        ),
        Reply(body=completion("I could not open a ticket: tickets are frozen.")),
    )
    call, h = make_call(in_tenant, agent, "Printer is on fire", policy=deny("call_tool"))

    result = run_llm_agent(call)

    assert result.output == "I could not open a ticket: tickets are frozen."
    assert Ticket.objects.for_tenant(in_tenant).count() == 0
    sent_back = server.received[1].body["messages"][-1]
    assert sent_back["role"] == "tool" and sent_back["tool_call_id"] == "call_1"
    error = json.loads(sent_back["content"])
    assert error["code"] == "policy_denied"
    assert "frozen by the test" in error["error"]
    (event,) = h.of("tool.call")
    assert event["policy"] == "deny" and event["error"]["code"] == "policy_denied"
    assert event["idempotency_key"] == f"run-{call.run_id}-step-triage-call-0"
    offered = [t["function"]["name"] for t in server.received[0].body["tools"]]
    assert offered == ["open-ticket"]


def test_tool_needing_approval_is_a_tool_error_for_now(in_tenant, sim, ticket_tool):
    agent = sim_agent(
        in_tenant, "triager", 'SIMULATE call open-ticket {"title": "Printer on fire"}'
    )
    call, h = make_call(
        in_tenant, agent, "Printer", policy=deny("call_tool", "require_approval", "risky")
    )

    result = run_llm_agent(call)

    assert Ticket.objects.for_tenant(in_tenant).count() == 0
    (answer,) = tool_results(result)
    assert answer["code"] == "approval_required"
    assert "requires an approval (risky)" in answer["error"]
    assert h.of("tool.call")[0]["policy"] == "require_approval"
    assert "open-ticket returned" in result.output  # the model got the error and answered


def test_unknown_tool_name_is_an_error_the_model_recovers_from(in_tenant, oa, server):
    agent = oa_agent(in_tenant, "helper", builtin_tools=["context"])
    server.script(
        Reply(
            body=completion(
                None, tool_calls=[tool_call("c1", "launch_rockets", {})], finish="tool_calls"
            )
        ),
        Reply(body=completion("Done without rockets.")),
    )
    call, h = make_call(in_tenant, agent, "Go")

    result = run_llm_agent(call)

    assert result.output == "Done without rockets."
    error = json.loads(server.received[1].body["messages"][-1]["content"])
    assert error["code"] == "unknown_tool"
    assert "launch_rockets" in error["error"] and "context_get" in error["error"]
    assert h.of("tool.call")[0]["kind"] == "unknown"


def test_anthropic_sdk_tool_round_trip_writes_a_ticket(in_tenant, server, ticket_tool):
    make_provider(
        in_tenant,
        slug="ant",
        kind="anthropic",
        base_url=server.url,
        api_key="loopback-key-456",
        models=ANTHROPIC_PRICES,
        timeout_seconds=5,
    )
    agent = make_agent(
        in_tenant,
        slug="claude-triager",
        tags=["support"],
        config={"provider": "ant", "model": "claude-test", "system_prompt": "Open tickets."},
    )
    server.script(
        Reply(
            body=anthropic_message(
                [
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "open-ticket",
                        "input": {"title": "Broken VPN"},
                    }
                ],
                stop_reason="tool_use",
            )
        ),
        Reply(body=anthropic_message([{"type": "text", "text": "Ticket opened."}])),
    )
    call, h = make_call(in_tenant, agent, "My VPN is broken")

    result = run_llm_agent(call)

    assert result.output == "Ticket opened."
    assert Ticket.objects.for_tenant(in_tenant).get().title == "Broken VPN"
    second = server.received[1].body
    assert second["system"] == "Open tickets."
    block = second["messages"][-1]["content"][0]
    assert (block["type"], block["tool_use_id"]) == ("tool_result", "toolu_1")
    assert json.loads(block["content"])["ticket"]["title"] == "Broken VPN"
    calls = h.of("model.call")
    assert [c["provider"] for c in calls] == ["ant", "ant"]
    assert calls[0]["cost_usd"] == pytest.approx((20 * 3 + 9 * 15) / 1_000_000)
    assert result.cost_usd == pytest.approx(2 * (20 * 3 + 9 * 15) / 1_000_000)


# --- structured output -----------------------------------------------------------------


def test_structured_output_valid_first_time(in_tenant, sim):
    agent = sim_agent(in_tenant, "classifier", "Classify.", output_schema=TRIAGE_SCHEMA)
    call, h = make_call(in_tenant, agent, "The export crashes: a bug, surely")

    result = run_llm_agent(call)

    assert isinstance(result.output, dict)
    assert result.output["category"] == "bug"
    assert isinstance(result.output["summary"], str)
    assert h.of("model.repair") == []
    assert len(h.of("model.call")) == 1


def test_structured_output_repaired_once(in_tenant, oa, server):
    agent = oa_agent(in_tenant, "classifier", output_schema=TRIAGE_SCHEMA)
    server.script(
        Reply(body=completion('{"category": "refund"}')),
        Reply(body=completion('```json\n{"category": "billing", "summary": "Refund late"}\n```')),
    )
    call, h = make_call(in_tenant, agent, "Where is my refund?")

    result = run_llm_agent(call)

    assert result.output == {"category": "billing", "summary": "Refund late"}
    (repair,) = h.of("model.repair")
    assert {e["path"] for e in repair["errors"]} == {"$", "$.category"}
    assert server.received[0].body["response_format"]["type"] == "json_schema"
    prompt = server.received[1].body["messages"][-1]
    assert prompt["role"] == "user"
    assert (
        "$.category" in prompt["content"]
        and "'summary' is a required property" in (prompt["content"])
    )
    assert server.received[1].body["messages"][-2] == {
        "role": "assistant",
        "content": '{"category": "refund"}',
    }
    assert h.types() == ["model.call", "model.repair", "model.call"]
    assert (result.input_tokens, result.output_tokens) == (22, 14)


def test_structured_output_still_invalid_after_repair_fails_the_step(in_tenant, oa, server):
    agent = oa_agent(in_tenant, "classifier", output_schema=TRIAGE_SCHEMA)
    server.script(
        Reply(body=completion("Sure, here you go!")),
        Reply(body=completion('{"category": "refund", "summary": 3}')),
        Reply(body=completion('{"category": "billing", "summary": "never asked for"}')),
    )
    call, h = make_call(in_tenant, agent, "Where is my refund?")

    with pytest.raises(StepFailure) as caught:
        run_llm_agent(call)

    failure = caught.value
    assert failure.code == "invalid_output" and failure.retryable is False
    assert "after one repair attempt" in failure.message
    assert "$.category" in failure.message and "$.summary" in failure.message
    assert {e["path"] for e in failure.details["errors"]} == {"$.category", "$.summary"}
    (repair,) = h.of("model.repair")
    assert repair["errors"][0]["path"] == "$"
    assert "not valid JSON" in repair["errors"][0]["message"]
    assert len(server.received) == 2


# --- failures --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "retryable"),
    [
        (503, openai_error("Overloaded, try later", "server_error"), True),
        (429, openai_error("Slow down", "rate_limit_error"), True),
        (401, openai_error("Bad key", "invalid_request_error", "invalid_api_key"), False),
    ],
)
def test_provider_error_becomes_a_step_failure(in_tenant, oa, server, status, body, retryable):
    agent = oa_agent(in_tenant, "helper")
    server.script(Reply(status, body))
    call, h = make_call(in_tenant, agent, "Hi")

    with pytest.raises(StepFailure) as caught:
        run_llm_agent(call)

    assert caught.value.code == "provider_error"
    assert caught.value.retryable is retryable
    assert caught.value.details["status"] == status
    assert f"HTTP {status}" in caught.value.message
    assert "loopback-key-123" not in caught.value.message
    assert h.of("model.call") == []
    (error,) = h.of("model.error")
    assert (error["status"], error["retryable"]) == (status, retryable)


def test_deadline_bounds_the_model_call(in_tenant, oa, server):
    agent = oa_agent(in_tenant, "slowpoke")
    server.script(Reply(body=completion("too late"), delay=5))
    call, _ = make_call(in_tenant, agent, "Hi", deadline=time.monotonic() + 0.5)

    started = time.monotonic()
    with pytest.raises(StepFailure) as caught:
        run_llm_agent(call)

    assert time.monotonic() - started < 3  # the provider's own timeout is 5 s
    assert (caught.value.code, caught.value.retryable) == ("timeout", True)

    expired, h = make_call(in_tenant, agent, "Hi", deadline=time.monotonic() - 1)
    with pytest.raises(StepFailure) as caught:
        run_llm_agent(expired)
    assert caught.value.code == "timeout"
    assert h.events == [] and len(server.received) == 1


def test_cancel_between_calls_raises_step_cancelled_before_the_tool_runs(
    in_tenant, sim, ticket_tool
):
    agent = sim_agent(
        in_tenant, "triager", 'SIMULATE call open-ticket {"title": "Printer on fire"}'
    )
    cancelled = {"flag": False}
    harness = Harness()

    def check() -> None:
        if cancelled["flag"]:
            raise StepCancelled()

    call, h = make_call(in_tenant, agent, "Printer", check_cancel=check, harness=harness)
    original_emit = call.emit

    def emit(kind: str, payload: dict[str, Any]) -> None:
        original_emit(kind, payload)
        if kind == "model.call":
            cancelled["flag"] = True  # the user presses cancel while the model answers

    call.emit = emit

    with pytest.raises(StepCancelled):
        run_llm_agent(call)

    assert h.types() == ["model.call"]
    assert Ticket.objects.for_tenant(in_tenant).count() == 0


@pytest.mark.parametrize(
    ("action", "effect", "words"),
    [
        ("invoke_agent", "deny", "denied invoking agent 'helper'"),
        ("call_model", "deny", "denied calling model 'sim-1'"),
        ("call_model", "require_approval", "requires an approval for calling model"),
    ],
)
def test_refused_invocation_or_model_call_fails_the_step(in_tenant, sim, action, effect, words):
    agent = sim_agent(in_tenant, "helper", "You help.")
    call, h = make_call(in_tenant, agent, "Hi", policy=deny(action, effect))

    with pytest.raises(StepFailure) as caught:
        invoke_llm(call)

    assert caught.value.code == "policy_denied"
    assert words in caught.value.message and "frozen by the test" in caught.value.message
    assert caught.value.details["effect"] == effect
    assert h.of("model.call") == []
    assert h.requests[-1].action == action


def test_max_iterations_stops_an_agent_that_keeps_calling_tools(in_tenant, oa, server):
    agent = oa_agent(in_tenant, "looper", max_iterations=2)
    looping = completion(
        None, tool_calls=[tool_call("c", "context_get", {"key": "x"})], finish="tool_calls"
    )
    server.script(Reply(body=looping), Reply(body=looping), Reply(body=completion("never")))
    call, h = make_call(in_tenant, agent, "Go")

    with pytest.raises(StepFailure) as caught:
        run_llm_agent(call)

    assert caught.value.code == "max_iterations"
    assert "2 model calls" in caught.value.message
    assert len(server.received) == 2
    assert len(h.of("tool.call")) == 2


# --- manager ---------------------------------------------------------------------------


@pytest.fixture
def team(in_tenant, sim):
    billing = sim_agent(
        in_tenant,
        "billing-agent",
        'You check invoices.\nSIMULATE call context_set {"key": "invoice", "value": "paid"}',
        builtin_tools=["context"],
    )
    tech = sim_agent(in_tenant, "tech-agent", "You read logs.")
    supervisor = sim_agent(
        in_tenant,
        "supervisor",
        "You coordinate.\n"
        'SIMULATE call delegate_to_billing_agent {"task": "Check invoice 77"}\n'
        'SIMULATE call delegate_to_tech_agent {"task": "Check the logs", "input": {"host": "w1"}}',
    )
    return supervisor, [(a, a.current_version) for a in (billing, tech)]


def recording_invoke(children: list[AgentCall]):
    def invoke(child: AgentCall) -> AgentResult:
        children.append(child)
        return invoke_llm(child)

    return invoke


def test_manager_delegates_to_two_agents(in_tenant, team):
    supervisor, delegates = team
    children: list[AgentCall] = []
    call, h = make_call(in_tenant, supervisor, "Customer 77 says they were double charged")

    result = run_manager(call, delegates, recording_invoke(children), max_delegations=5)

    supervised, *children = children  # the supervisor runs through invoke too
    assert supervised.agent.slug == "supervisor" and supervised.extra_tools
    assert [c.agent.slug for c in children] == ["billing-agent", "tech-agent"]
    assert children[0].input == "Check invoice 77"
    assert children[1].input == {"task": "Check the logs", "input": {"host": "w1"}}
    assert all(c.messages is None and c.extra_tools == [] for c in children)
    assert all(c.run_context is call.run_context for c in children)
    assert all((c.run_id, c.step_key) == (call.run_id, call.step_key) for c in children)
    assert children[0].version == delegates[0][1]

    phases = [(e["phase"], e["delegate"]) for e in h.of("agent.delegate")]
    assert phases == [
        ("start", "billing-agent"),
        ("result", "billing-agent"),
        ("start", "tech-agent"),
        ("result", "tech-agent"),
    ]
    billing_result = h.of("agent.delegate")[1]
    assert "context_set returned" in billing_result["output"]
    assert [e["agent"] for e in h.of("model.call")] == [
        "supervisor",
        "billing-agent",
        "billing-agent",
        "tech-agent",
        "supervisor",
    ]
    answers = tool_results(result)
    assert [a["agent"] for a in answers] == ["billing-agent", "tech-agent"]
    assert answers[0]["output"] == billing_result["output"]
    assert "delegate_to_billing_agent returned" in result.output
    assert "delegate_to_tech_agent returned" in result.output
    inputs, outputs, cost = h.tokens()
    assert (result.input_tokens, result.output_tokens) == (inputs, outputs)
    assert result.cost_usd == pytest.approx(cost)
    assert result.context_updates == {"invoice": "paid"}
    assert call.run_context == {"invoice": "paid"}
    delegated = [r.agent for r in h.requests if r.action == "delegate"]
    assert delegated == ["billing-agent", "tech-agent"]


def test_manager_respects_max_delegations_and_delegate_policy(in_tenant, team):
    supervisor, delegates = team
    children: list[AgentCall] = []
    call, h = make_call(in_tenant, supervisor, "Help")

    run_manager(call, delegates, recording_invoke(children), max_delegations=1)

    assert [c.agent.slug for c in children] == ["supervisor", "billing-agent"]
    refused = h.of("tool.call")[-1]
    assert refused["tool"] == "delegate_to_tech_agent"
    assert refused["error"]["code"] == "max_delegations"

    def no_billing(request: PolicyRequest) -> Decision:
        if request.action == "delegate" and request.agent == "billing-agent":
            return Decision(effect="deny", reason="billing is off limits")
        return decide(request)

    children.clear()
    call, h = make_call(in_tenant, supervisor, "Help", policy=no_billing)
    result = run_manager(call, delegates, recording_invoke(children), max_delegations=5)

    assert [c.agent.slug for c in children] == ["supervisor", "tech-agent"]
    denied = json.loads(
        next(m.content for m in result.messages if m.name == "delegate_to_billing_agent")
    )
    assert denied["code"] == "policy_denied" and "billing is off limits" in denied["error"]
    assert [e["delegate"] for e in h.of("agent.delegate")] == ["tech-agent", "tech-agent"]


def test_manager_turns_a_delegate_failure_into_a_tool_error(in_tenant, team):
    supervisor, delegates = team

    def failing(child: AgentCall) -> AgentResult:
        if child.agent.slug == "billing-agent":
            raise StepFailure("bad output", code="invalid_output")
        return invoke_llm(child)

    call, h = make_call(in_tenant, supervisor, "Help")
    result = run_manager(call, delegates, failing, max_delegations=5)

    answers = tool_results(result)
    assert answers[0] == {
        "error": "Agent 'billing-agent' failed: bad output",
        "code": "invalid_output",
    }
    assert answers[1]["agent"] == "tech-agent"
    assert h.of("agent.delegate")[1]["error"]["code"] == "invalid_output"

    def outage(child: AgentCall) -> AgentResult:
        if child.agent.slug == "supervisor":
            return invoke_llm(child)
        raise StepFailure("provider down", code="provider_error", retryable=True)

    call, _ = make_call(in_tenant, supervisor, "Help")
    with pytest.raises(StepFailure) as caught:
        run_manager(call, delegates, outage, max_delegations=5)
    assert caught.value.retryable and caught.value.code == "provider_error"


# --- handoff ---------------------------------------------------------------------------


def test_handoff_passes_the_conversation_to_the_next_agent(in_tenant, oa, server):
    triage = oa_agent(in_tenant, "triage", "You are triage.")
    billing = oa_agent(in_tenant, "billing", "You are billing.")
    agents = {a.slug: (a, a.current_version) for a in (triage, billing)}
    server.script(
        Reply(
            body=completion(
                None,
                tool_calls=[tool_call("call_h", "handoff_to_billing", {"reason": "refunds"})],
                finish="tool_calls",
            )
        ),
        Reply(body=completion("Your refund was issued yesterday.")),
    )
    call, h = make_call(in_tenant, triage, "Where is my refund?")

    result = run_handoff(call, agents, "triage", max_handoffs=2, invoke=invoke_llm)

    assert result.output == "Your refund was issued yesterday."
    assert result.handoff_to is None
    assert h.of("agent.handoff") == [
        {"from": "triage", "to": "billing", "reason": "refunds", "number": 1}
    ]
    first, second = (r.body for r in server.received)
    first_tools = {t["function"]["name"] for t in first["tools"]}
    second_tools = {t["function"]["name"] for t in second["tools"]}
    assert "handoff_to_billing" in first_tools and "handoff_to_triage" not in first_tools
    assert "handoff_to_triage" in second_tools and "handoff_to_billing" not in second_tools
    sent = second["messages"]
    assert sent[0] == {"role": "system", "content": "You are billing."}
    assert sent[1] == {"role": "user", "content": "Where is my refund?"}
    assert sent[2]["role"] == "assistant"
    assert sent[2]["tool_calls"][0]["function"]["name"] == "handoff_to_billing"
    assert sent[3]["role"] == "tool" and sent[3]["tool_call_id"] == "call_h"
    assert json.loads(sent[3]["content"]) == {"handed_off_to": "billing", "reason": "refunds"}
    assert sent[4]["role"] == "user"
    assert "'triage' handed this conversation over" in sent[4]["content"]
    assert "refunds" in sent[4]["content"]
    assert len(sent) == 5 and all(m["role"] != "system" for m in sent[1:])
    assert [m.role for m in result.messages] == ["user", "assistant", "tool", "user", "assistant"]
    assert [e["agent"] for e in h.of("model.call")] == ["triage", "billing"]
    assert (result.input_tokens, result.output_tokens) == (22, 14)
    assert [r.agent for r in h.requests if r.action == "invoke_agent"] == ["triage", "billing"]
    assert [r.agent for r in h.requests if r.action == "delegate"] == ["billing"]
    json.dumps(messages_to_json(result.messages))  # storable as JSON by the runner


def test_handoff_with_simulated_agents_and_separate_memories(in_tenant, sim):
    front = sim_agent(
        in_tenant,
        "front-desk",
        'SIMULATE call memory_set {"key": "seen", "value": true}\n'
        'SIMULATE call handoff_to_billing {"reason": "invoice question"}',
        builtin_tools=["memory"],
    )
    billing = sim_agent(in_tenant, "billing", "You handle invoices.")
    agents = {a.slug: (a, a.current_version) for a in (front, billing)}
    loaded: list[str] = []

    def memory_for(agent: Any) -> dict[str, Any]:
        loaded.append(agent.slug)
        return {"owner": agent.slug}

    call, h = make_call(in_tenant, front, "Why was I charged twice?")
    result = run_handoff(
        call, agents, "front-desk", max_handoffs=1, invoke=invoke_llm, memory_for=memory_for
    )

    assert result.output.startswith("[simulated sim-1] You asked: Agent 'front-desk' handed")
    assert h.of("agent.handoff")[0]["reason"] == "invoice question"
    assert call.memory == {"seen": True}
    assert loaded == ["billing"]
    inputs, outputs, cost = h.tokens()
    assert (result.input_tokens, result.output_tokens) == (inputs, outputs)
    assert result.cost_usd == pytest.approx(cost) and cost > 0
    assert result.messages[0] == Message("user", "Why was I charged twice?")


def test_handoff_limit_fails_the_step(in_tenant, sim):
    ping = sim_agent(in_tenant, "ping", 'SIMULATE call handoff_to_pong {"reason": "yours"}')
    pong = sim_agent(in_tenant, "pong", 'SIMULATE call handoff_to_ping {"reason": "no, yours"}')
    agents = {a.slug: (a, a.current_version) for a in (ping, pong)}
    call, h = make_call(in_tenant, ping, "Who answers?")

    with pytest.raises(StepFailure) as caught:
        run_handoff(call, agents, "ping", max_handoffs=2, invoke=invoke_llm)

    assert caught.value.code == "max_handoffs"
    assert caught.value.details["path"] == ["ping", "pong", "ping"]
    assert [(e["from"], e["to"]) for e in h.of("agent.handoff")] == [
        ("ping", "pong"),
        ("pong", "ping"),
    ]

    with pytest.raises(StepFailure) as caught:
        run_handoff(call, agents, "nobody", max_handoffs=2, invoke=invoke_llm)
    assert caught.value.code == "config_error"


def test_prior_conversation_keeps_its_turns_but_not_its_system_prompt(in_tenant, oa, server):
    agent = oa_agent(in_tenant, "continuer", "You are the new agent.")
    server.script(Reply(body=completion("Continuing.")))
    call, _ = make_call(in_tenant, agent, None)
    call.messages = [
        {"role": "system", "content": "You were the old agent."},
        {"role": "user", "content": "Earlier question"},
        Message("assistant", "Earlier answer"),
    ]

    result = run_llm_agent(call)

    assert server.received[0].body["messages"] == [
        {"role": "system", "content": "You are the new agent."},
        {"role": "user", "content": "Earlier question"},
        {"role": "assistant", "content": "Earlier answer"},
    ]
    assert messages_to_json(result.messages) == [
        {"role": "user", "content": "Earlier question"},
        {"role": "assistant", "content": "Earlier answer"},
        {"role": "assistant", "content": "Continuing."},
    ]
