"""Bad input is a 4xx, never a 500 (issue 11, item 4): a NUL character in JSON or in a query
parameter is a 400 naming the field; a body over ``MAX_REQUEST_BODY_BYTES`` is a 413 stating
the limit; JSON nested deeper than ``JSON_MAX_DEPTH`` is a 400 before it is parsed. The same
limits hold for the dashboard's JSON fields and for websocket messages.

Before these limits each case below answered 500: PostgreSQL refused the NUL inside the write
(``DataError: unsupported Unicode escape sequence``), ``RequestDataTooBig`` reached DRF's
handler as an unknown exception, and the JSON parser hit ``RecursionError``.
"""

from __future__ import annotations

import json
from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from controlplane import jsoninput
from controlplane.asgi import application
from controlplane.audit.models import AuditEvent
from policies.models import Policy
from runs.execution import progress
from runs.models import Run, Workflow
from tests.api_mixins import assert_error_shape
from tests.test_tenant_matrix import Objects

NUL = "\u0000"
T = "/api/v1/t/acme"


def deep(levels: int, leaf: str = "1") -> str:
    """JSON text of ``levels`` nested arrays around ``leaf``."""
    return "[" * levels + leaf + "]" * levels


@pytest.fixture
def no_broker():
    with mock.patch.object(progress, "dispatch"):  # runs stay queued
        yield


@pytest.fixture
def owner(world, api, no_broker):
    client = api(world.alice, world.acme)
    client.raise_request_exception = False  # a 500 must show as one, not as a test error
    return client


@pytest.fixture
def objects(world):
    return Objects(world)


# the JSON checks, without HTTP --------------------------------------------------------------
class TestJsonInput:
    def test_depth_counts_objects_and_arrays_not_brackets_in_strings(self):
        assert jsoninput.nesting_depth('{"a": [1, {"b": []}]}') == 4
        assert jsoninput.nesting_depth('"[[[[{{{{"') == 0
        assert jsoninput.nesting_depth(r'{"a": "\"[[[[", "b": "\\"}') == 1
        assert jsoninput.nesting_depth("3") == 0

    def test_depth_of_a_very_deep_text_without_recursion(self):
        assert jsoninput.nesting_depth(deep(200_000)) == 200_000

    def test_load_refuses_past_the_limit_and_accepts_at_it(self, settings):
        settings.JSON_MAX_DEPTH = 10
        assert jsoninput.load(deep(10)) is not None
        with pytest.raises(jsoninput.JSONInputError) as refused:
            jsoninput.load(deep(11))
        assert refused.value.code == "too_deep" and "10 levels" in refused.value.message

    def test_nul_is_found_at_its_path_in_values_and_keys(self):
        with pytest.raises(jsoninput.JSONInputError) as in_value:
            jsoninput.load(json.dumps({"a": [1, {"b": "x" + NUL}]}))
        assert (in_value.value.code, in_value.value.path) == ("null_character", "a.1.b")
        with pytest.raises(jsoninput.JSONInputError) as in_key:
            jsoninput.load(json.dumps({"a": {"k" + NUL: 1}}))
        assert in_key.value.path == "a.k\\u0000"

    def test_an_escaped_backslash_before_u0000_is_not_a_nul(self):
        assert jsoninput.load(r'{"a": "\\u0000"}') == {"a": "\\u0000"}


# NUL characters in the API --------------------------------------------------------------------
def _nul_cases(objects, world):
    workflow = objects.keys("workflow", world.acme)["slug"]
    run = objects.keys("run", world.acme)["pk"]
    tool = objects.keys("tool", world.acme)["slug"]
    provider = objects.keys("provider", world.acme)["slug"]
    definition = {
        "input_schema": {"type": "object"},
        "example_input": {},
        "steps": [{"id": "calc", "type": "tool", "tool": "calc", "arguments": {"x": "1" + NUL}}],
    }
    return [
        ("post", f"{T}/runs/", {"workflow": workflow, "input": {"q": "a" + NUL}}, "input.q"),
        ("post", f"{T}/runs/", {"workflow": workflow, "input": {"q" + NUL: 1}}, "input.q\\u0000"),
        ("post", f"{T}/runs/{run}/rerun/", {"input": {"q": NUL}}, "input.q"),
        (
            "post",
            f"{T}/workflows/",
            {"slug": "nul-flow", "name": "N", "definition": definition},
            "definition.steps.0.arguments.x",
        ),
        ("post", f"{T}/workflows/validate/", {"definition": definition}, None),
        ("patch", f"{T}/tools/{tool}/", {"headers": {"X-Team": "a" + NUL}}, "headers.X-Team"),
        ("patch", f"{T}/tools/{tool}/", {"config": {"k": NUL}}, "config.k"),
        ("patch", f"{T}/providers/{provider}/", {"models": ["gpt" + NUL]}, "models.0"),
        ("post", f"{T}/tool-grants/", {"tool": tool, "agent_tag": "x" + NUL}, "agent_tag"),
        ("post", f"{T}/policies/", {"slug": "p", "name": "P" + NUL, "definition": {}}, "name"),
    ]


@pytest.mark.django_db
def test_nul_in_any_json_string_or_key_is_a_400_naming_the_field(world, owner, objects):
    cases = _nul_cases(objects, world)
    runs, workflows = Run.objects.unscoped().count(), Workflow.objects.unscoped().count()
    for method, url, body, attr in cases:
        response = getattr(owner, method)(url, body, format="json")
        error = assert_error_shape(response, 400, attr=attr)["errors"][0]
        assert error["code"] == "null_character", (url, error)
        assert "NUL character" in error["detail"]
    assert (Run.objects.unscoped().count(), Workflow.objects.unscoped().count()) == (
        runs,
        workflows,
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query, name",
    [
        ("?a%00=1", "a\\u0000"),
        ("?action=run%00started", "action"),
        ("?format=csv&actor=%00", "actor"),
    ],
)
def test_nul_in_a_query_parameter_is_a_400_naming_it(world, owner, query, name):
    for path in ("/audit-events/export/", "/audit-events/", "/runs/"):
        response = owner.get(f"{T}{path}{query}")
        error = assert_error_shape(response, 400, attr=name)["errors"][0]
        assert error["code"] == "null_character"


@pytest.mark.django_db
def test_nul_in_a_query_parameter_of_a_page_is_a_400_page(world):
    client = Client()
    client.force_login(world.alice)
    response = client.get("/t/acme/runs/?status=%00")
    assert response.status_code == 400
    assert b"NUL character" in response.content and b"status" in response.content


# size -------------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("megabytes", [5, 20])
def test_a_body_over_the_limit_is_a_413_stating_it(world, owner, objects, megabytes):
    workflow = objects.keys("workflow", world.acme)["slug"]
    body = json.dumps({"workflow": workflow, "input": {"text": "a" * (megabytes * 2**20)}})
    response = owner.post(f"{T}/runs/", body, content_type="application/json")
    error = assert_error_shape(response, 413)["errors"][0]
    assert error["code"] == "request_too_large"
    assert "2,621,440 bytes" in error["detail"] and "MAX_REQUEST_BODY_BYTES" in error["detail"]
    assert not Run.objects.unscoped().exists()


@pytest.mark.django_db
def test_the_limit_is_the_setting(world, owner, objects, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100_000
    workflow = objects.keys("workflow", world.acme)["slug"]
    small = {"workflow": workflow, "input": {"text": "a" * 90_000}}
    assert owner.post(f"{T}/runs/", small, format="json").status_code == 201
    big = {"workflow": workflow, "input": {"text": "a" * 100_001}}
    response = owner.post(f"{T}/runs/", big, format="json")
    assert "100,000 bytes" in assert_error_shape(response, 413)["errors"][0]["detail"]


@pytest.mark.django_db
def test_a_dashboard_form_over_the_limit_is_a_413_page(world):
    client = Client()
    client.force_login(world.alice)
    response = client.post("/t/acme/policies/new/", {"definition": "x" * (3 * 2**20)})
    assert response.status_code == 413
    assert b"2,621,440 bytes" in response.content


# depth ------------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("levels", [5_000, 10_000])
def test_deep_json_is_a_400_with_the_limit(world, owner, objects, levels):
    workflow = objects.keys("workflow", world.acme)["slug"]
    bodies = [
        (f"{T}/runs/", f'{{"workflow": "{workflow}", "input": {{"a": {deep(levels)}}}}}'),
        (f"{T}/workflows/validate/", f'{{"definition": {deep(levels)}}}'),
        (f"{T}/policies/", f'{{"slug": "p", "name": "P", "definition": {deep(levels)}}}'),
    ]
    for url, body in bodies:
        response = owner.post(url, body, content_type="application/json")
        error = assert_error_shape(response, 400)["errors"][0]
        assert error["code"] == "too_deep", (url, error)
        assert "64 levels" in error["detail"] and "JSON_MAX_DEPTH" in error["detail"]
    assert not Policy.objects.unscoped().filter(slug="p").exists()


@pytest.mark.django_db
def test_input_once_accepted_and_later_failing_its_step_is_refused_at_the_edge(
    world, owner, objects
):
    # 900 levels parsed (under Python's recursion limit) and were stored; the step that
    # rendered them then failed with RecursionError. 64 levels of the body are the limit.
    workflow = objects.keys("workflow", world.acme)["slug"]
    runs = Run.objects.unscoped().count()
    for levels, status in ((900, 400), (65, 400), (62, 201)):  # the body adds two levels
        body = f'{{"workflow": "{workflow}", "input": {{"a": {deep(levels)}}}}}'
        response = owner.post(f"{T}/runs/", body, content_type="application/json")
        assert response.status_code == status, (levels, response.content[:300])
    assert Run.objects.unscoped().count() == runs + 1


@pytest.mark.django_db
def test_validate_accepts_a_definition_at_the_limit(world, owner):
    body = {"definition": {"steps": json.loads(deep(62))}}  # 64 levels with the body's object
    response = owner.post(f"{T}/workflows/validate/", body, format="json")
    assert response.status_code == 200
    assert response.json()["valid"] is False  # not a definition, but checked, not refused


# dashboard JSON fields --------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize(
    "definition, message",
    [
        (json.dumps({"rules": [{"id": "r" + NUL, "effect": "deny"}]}), "NUL character"),
        ('{"rules": ' + deep(5_000) + "}", "64 levels"),
    ],
)
def test_dashboard_json_fields_refuse_nul_and_depth_inline(world, definition, message):
    client = Client()
    client.force_login(world.alice)
    data = {"slug": "p", "name": "P", "description": "", "mode": "enforce", "note": ""}
    response = client.post("/t/acme/policies/new/", {**data, "definition": definition})
    assert response.status_code == 400  # the form again, with the error at the field
    errors = response.context["form"].errors["definition"]
    assert any(message in e for e in errors), errors
    assert not Policy.objects.unscoped().filter(slug="p").exists()


# websocket messages -----------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_websocket_messages_breaking_the_limits_are_answered_not_fatal(world, objects):
    from tests.runs.test_consumers import _cookie_for

    run = objects.keys("run", world.acme)["pk"]

    async def scenario():
        cookie = await database_sync_to_async(_cookie_for)(world.alice)
        headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), (b"cookie", cookie)]
        communicator = WebsocketCommunicator(
            application, f"/ws/t/acme/runs/{run}/?after=0", headers=headers
        )
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        first = await communicator.receive_json_from(timeout=5)
        while first["kind"] != "run.synced":
            first = await communicator.receive_json_from(timeout=5)
        answers = []
        for message in (deep(10_000), '{"resume_from": "' + NUL + '"}', "not json", "{}"):
            await communicator.send_to(text_data=message.replace(NUL, "\\u0000"))
            answers.append(await communicator.receive_json_from(timeout=5))
        await communicator.send_json_to({"resume_from": 0})  # the socket still works
        while (answer := await communicator.receive_json_from(timeout=5))["kind"] != "run.synced":
            pass
        await communicator.disconnect()
        return answers, answer

    answers, synced = async_to_sync(scenario)()
    assert [a["kind"] for a in answers] == ["error"] * 4
    assert "64 levels" in answers[0]["error"]
    assert "NUL character" in answers[1]["error"]
    assert "not valid JSON" in answers[2]["error"]
    assert synced["kind"] == "run.synced"


@pytest.mark.django_db
def test_nothing_is_audited_for_refused_input(world, owner, objects):
    workflow = objects.keys("workflow", world.acme)["slug"]
    before = AuditEvent.objects.for_tenant(world.acme).count()
    owner.post(f"{T}/runs/", {"workflow": workflow, "input": {"q": NUL}}, format="json")
    owner.post(f"{T}/runs/", deep(100), content_type="application/json")
    assert AuditEvent.objects.for_tenant(world.acme).count() == before
