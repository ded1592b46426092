"""JSON Schema ``pattern`` / ``patternProperties`` are tenants' regexes too: RE2, checked at save.

A workflow's input schema, a tool's argument and result schemas, an agent's output schema: the
jsonschema library matched their patterns with Python's backtracking ``re`` against whatever
a caller sent (``(a+)+$`` on 24 ``a`` and a ``!`` took 4 s, each extra ``a`` doubling it).
"""

import pytest
from django.core.exceptions import ValidationError
from jsonschema import Draft7Validator, Draft202012Validator
from jsonschema.exceptions import SchemaError

from agents.tools.base import validate_schema, validation_errors
from controlplane import context
from runs import services, workflow_services
from runs.engine.patterns import MAX_MATCH_TEXT, schema_pattern_problems
from runs.engine.validation import validate_definition
from runs.models import Workflow, WorkflowVersion
from tests.runs.test_definition_validation import REGISTRY


def test_jsonschema_patterns_run_on_re2():
    schema = {"type": "string", "pattern": "(a+)+$"}
    # a backtracking engine would not finish this in a lifetime
    [error] = Draft202012Validator(schema).iter_errors("a" * 50_000 + "!")
    assert "does not match" in error.message
    assert list(Draft202012Validator(schema).iter_errors("a" * 50_000)) == []
    # RE2, not re: a lookahead is refused instead of run
    with pytest.raises(SchemaError, match="RE2"):
        list(Draft202012Validator({"pattern": "(?=a)"}).iter_errors("a"))


def test_pattern_properties_and_additional_properties_and_older_drafts_use_re2_too():
    schema = {"type": "object", "patternProperties": {"^(a+)+$": {"type": "integer"}}}
    strict = {**schema, "additionalProperties": False}
    key = "a" * 50_000 + "!"
    assert [e.validator for e in Draft202012Validator(strict).iter_errors({key: 1})] == [
        "additionalProperties"
    ]
    assert [e.validator for e in Draft202012Validator(schema).iter_errors({"aaa": "x"})] == ["type"]
    [error] = Draft7Validator({"pattern": "(a+)+$"}).iter_errors("a" * 50_000 + "!")
    assert error.validator == "pattern"


def test_text_longer_than_the_limit_does_not_match_instead_of_being_searched():
    schema = {"type": "string", "pattern": "^a"}
    [error] = Draft202012Validator(schema).iter_errors("a" * (MAX_MATCH_TEXT + 1))
    assert error.validator == "pattern"


def test_schema_pattern_problems_name_each_place():
    schema = {
        "type": "object",
        "properties": {
            "code": {"type": "string", "pattern": r"(x)\1"},
            "pattern": {"type": "string", "pattern": "^ok$"},  # a property named pattern
            "list": {"type": "array", "items": {"pattern": "(?<=a)b"}},
        },
        "patternProperties": {"(": {}},
        "enum": [{"pattern": "(?=this is data, not a schema)"}],
    }
    found = dict(schema_pattern_problems(schema))
    assert set(found) == {
        "$.properties.code.pattern",
        "$.properties.list.items.pattern",
        "$.patternProperties['(']",
    }
    assert "feature RE2 does not have" in found["$.properties.code.pattern"]
    assert found["$.patternProperties['(']"].startswith("Invalid regular expression")


def test_tool_and_agent_schemas_refuse_unsupported_patterns_at_save():
    [problem] = validate_schema({"type": "object", "properties": {"x": {"pattern": "(?!x)"}}})
    assert problem.startswith("$.properties.x.pattern: ") and "RE2" in problem
    assert validate_schema({"type": "object", "properties": {"x": {"pattern": "^x+$"}}}) == []


def test_tool_arguments_are_checked_in_linear_time():
    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": "(a+)+$"}}}
    [error] = validation_errors(schema, {"s": "a" * 50_000 + "!"})
    assert error["path"] == "$.s"


def test_workflow_input_schemas_refuse_unsupported_patterns_at_save():
    definition = {
        "input_schema": {
            "type": "object",
            "properties": {"code": {"type": "string", "pattern": r"(\d)\1"}},
        },
        "example_input": {"code": "11"},
        "steps": [{"id": "a", "type": "agent", "agent": "summarizer"}],
    }
    found = {e.path: e.message for e in validate_definition(definition, REGISTRY)}
    assert "feature RE2 does not have" in found["input_schema.properties.code.pattern"]


def test_a_stored_schema_with_a_pattern_re2_refuses_is_a_clear_input_error(world):
    with context.system_context("tests", tenant=world.acme):
        workflow = workflow_services.workflow_create(
            tenant=world.acme,
            slug="legacy",
            name="legacy",
            definition={
                "input_schema": {"type": "object"},
                "example_input": {},
                "steps": [{"id": "a", "type": "approval", "title": "ok?"}],
            },
        )
    # as saved before patterns were checked
    definition = {**workflow.current_version.definition}
    definition["input_schema"] = {"properties": {"m": {"pattern": "(?=x)"}}}
    WorkflowVersion.objects.unscoped().filter(pk=workflow.current_version_id).update(
        definition=definition
    )
    workflow = Workflow.objects.unscoped().get(pk=workflow.pk)
    with (
        context.system_context("tests", tenant=world.acme),
        pytest.raises(ValidationError) as caught,
    ):
        services.run_start(tenant=world.acme, workflow=workflow, input={"m": "x"})
    assert "input schema cannot be used" in str(caught.value.message_dict["input"])
