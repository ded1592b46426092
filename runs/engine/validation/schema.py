"""The published JSON Schema of a workflow definition, and the validators built from it.

The step types' schemas are in ``step_schemas``; this module puts them together under the
definition's own fields and checks a definition against them, one step at a time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from runs.engine import patterns
from runs.engine.definition import STEP_TYPES
from runs.engine.validation.report import Errors, value_path
from runs.engine.validation.step_schemas import COMMON, ID_PATTERN, STEP_SCHEMAS, templated

patterns.install_in_jsonschema()  # input schemas' patterns run on RE2 here too (no Django)


DEFINITION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "urn:controlplane:workflow-definition",
    "title": "Workflow definition",
    "description": (
        "A workflow version's definition: steps that run when the steps they need have "
        "finished, with inputs templated from the run input and earlier step outputs."
    ),
    "type": "object",
    "required": ["input_schema", "example_input", "steps"],
    "additionalProperties": False,
    "properties": {
        "input_schema": {
            "type": "object",
            "description": "JSON Schema (draft 2020-12) of the run input.",
        },
        "example_input": {"description": "A run input valid against input_schema."},
        "output": templated("The run's output. Omitted: the output of the last step to finish."),
        "max_steps": {
            "type": "integer",
            "minimum": 1,
            "maximum": 100000,
            "default": 200,
            "description": "Most step runs (iterations and branches count) one run may make.",
        },
        "deadline_seconds": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "Wall time after which the run times out.",
        },
        "steps": {
            "type": "array",
            "minItems": 1,
            "items": {"$ref": "#/$defs/step"},
            "description": "The steps, in written order (the default order of a pipeline).",
        },
    },
    "$defs": {
        "step": {
            "type": "object",
            "description": "A step; `type` says which fields it has.",
            "required": ["id", "type"],
            "properties": {"id": COMMON["id"], "type": COMMON["type"]},
            "allOf": [
                {
                    "if": {"properties": {"type": {"const": kind}}, "required": ["type"]},
                    "then": {"$ref": f"#/$defs/{kind}_step"},
                }
                for kind in STEP_TYPES
            ],
        },
        **{f"{kind}_step": schema for kind, schema in STEP_SCHEMAS.items()},
    },
}

# Steps are checked one by one against their type's schema: the same rules as
# DEFINITION_SCHEMA, without re-testing every type's `if` on every step.
TOP_VALIDATOR = Draft202012Validator(
    {**DEFINITION_SCHEMA, "properties": {**DEFINITION_SCHEMA["properties"], "steps": {}}}
)
STEPS_VALIDATOR = Draft202012Validator(
    {k: v for k, v in DEFINITION_SCHEMA["properties"]["steps"].items() if k != "items"}
)
STEP_VALIDATORS = {kind: Draft202012Validator(s) for kind, s in STEP_SCHEMAS.items()}
STEP_BASE_VALIDATOR = Draft202012Validator(
    {k: v for k, v in DEFINITION_SCHEMA["$defs"]["step"].items() if k != "allOf"}
)
META_VALIDATOR = Draft202012Validator(Draft202012Validator.META_SCHEMA)


def _schema_message(error: ValidationError) -> str:
    if error.validator in ("oneOf", "anyOf", "not", "dependentRequired") and isinstance(
        error.schema, dict
    ):
        description = error.schema.get("description")
        if description:
            return description
    return error.message


def schema_errors(validator: Draft202012Validator, instance: Any, base: str, out: Errors) -> None:
    for error in validator.iter_errors(instance):
        out.add(value_path(base, error.absolute_path), _schema_message(error))


def check_schema(data: Any, out: Errors) -> None:
    schema_errors(TOP_VALIDATOR, data, "", out)
    if not isinstance(data, Mapping) or "steps" not in data:
        return
    steps = data["steps"]
    schema_errors(STEPS_VALIDATOR, steps, "steps", out)
    if not isinstance(steps, list):
        return
    for i, step in enumerate(steps):
        base = f"steps[{i}]"
        kind = step.get("type") if isinstance(step, Mapping) else None
        if isinstance(kind, str) and kind in STEP_VALIDATORS:
            schema_errors(STEP_VALIDATORS[kind], step, base, out)  # includes id and type
        else:
            schema_errors(STEP_BASE_VALIDATOR, step, base, out)


def valid_id(value: Any) -> bool:
    return isinstance(value, str) and re.match(ID_PATTERN, value) is not None
