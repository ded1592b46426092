"""Validation of workflow definitions: the published JSON Schema plus every cross-reference check.

Pure: the caller passes a ``RegistryView`` (the tenant's agents and tools by slug) and gets
back every problem, each with the path of the offending value (``steps[2].agent``,
``steps[0].input.message``, ``input_schema.properties.age.type``; ``""`` is the whole
definition). Nothing stops at the first error, and the cost is linear in the size of the
definition (plus one parse per distinct template string, cached across calls).

``validate_definition`` is the entry point; the checks live one concern per module:
``schema`` (the published JSON Schema, assembled from ``step_schemas``: one entry per step
type), ``graph`` (needs, cycles, order), ``references`` (template names), ``steps`` (per step
type), ``registry`` (agents and tools, through the ``RegistryView`` the Django side fills
in), ``report`` (the errors). Imports the rest of ``runs.engine`` and pure libraries only
(jsonschema, referencing).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError
from referencing import Registry
from referencing.exceptions import Unresolvable

from runs.engine import patterns
from runs.engine.validation.graph import build_graph
from runs.engine.validation.references import check_templates
from runs.engine.validation.registry import RegistryView
from runs.engine.validation.report import DefinitionError, Errors, sort_key, value_path
from runs.engine.validation.schema import META_VALIDATOR, check_schema
from runs.engine.validation.steps import check_step


def _check_input(data: Mapping[str, Any], out: Errors) -> None:
    schema = data.get("input_schema")
    if not isinstance(schema, Mapping):
        return  # missing or not an object: the definition schema said so
    broken = False
    for error in META_VALIDATOR.iter_errors(schema):
        out.add(value_path("input_schema", error.absolute_path), error.message)
        broken = True
    for where, message in patterns.schema_pattern_problems(schema, "input_schema"):
        out.add(where, message)
        broken = True
    if broken or "example_input" not in data:
        return
    try:
        validator = Draft202012Validator(
            schema, registry=Registry(), format_checker=FormatChecker()
        )
        for error in validator.iter_errors(data["example_input"]):
            out.add(value_path("example_input", error.absolute_path), error.message)
    except (SchemaError, Unresolvable) as exc:
        out.add("input_schema", f"The schema cannot be used: {exc}")


def validate_definition(data: Any, registry: RegistryView) -> list[DefinitionError]:
    """Every problem with the definition ``data``, sorted by path; empty when it is valid.

    Covers ``DEFINITION_SCHEMA`` (with the path of each violation), duplicate step ids,
    ``needs`` naming unknown steps or the step itself, cycles through ``needs`` (naming the
    steps in the cycle), steps that can never run, unknown or disabled agents and tools,
    agents of the wrong kind, tools not granted to the step's agent, router routes naming
    unknown steps, steps that do not need the router, or routes the router cannot give,
    handoff ``start`` outside ``agents``, duplicate branch names, ``for_each`` that is not one
    expression, conditions with malformed paths or regexes, templates that do not parse or
    that name unknown names, unknown steps, steps that may not have run before (not an
    ancestor through ``needs``), step-local names outside their step type, an
    ``input_schema`` that is not a valid JSON Schema and an ``example_input`` it rejects.
    Malformed parts are reported once and skipped by the later checks, never crash them.
    A definition with no errors can be given to ``parse_definition``.
    """
    out = Errors()
    check_schema(data, out)
    if isinstance(data, Mapping):
        steps = data.get("steps")
        steps = steps if isinstance(steps, list) else []
        graph = build_graph(steps, out)
        for i, step in enumerate(steps):
            if isinstance(step, Mapping):
                check_step(step, i, graph, registry, out)
        if "output" in data:
            check_templates(data["output"], "output", out, graph, None, where="the output")
        _check_input(data, out)
    return sorted(out.items, key=sort_key)
