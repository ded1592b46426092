"""The start form generated from a workflow's input JSON Schema (``runs.forms.RunStartForm``):
one field per top-level property of the right kind, required ones required, descriptions as
help, objects and arrays as JSON textareas, the whole input as JSON when the schema cannot
be fields or the person asks for it, and the service's errors placed on their field."""

from __future__ import annotations

import json

from django import forms
from django.core.exceptions import ValidationError

from runs.forms import RunStartForm, SchemaForm, SchemaJSONField

SCHEMA = {
    "type": "object",
    "required": ["message", "order", "urgent"],
    "properties": {
        "message": {"type": "string", "title": "Message", "description": "What the customer said."},
        "story": {"type": "string", "maxLength": 2000},
        "priority": {"enum": ["low", "high"]},
        "level": {"enum": [1, 2, 3]},
        "amount": {"type": "number", "minimum": 0},
        "copies": {"type": "integer", "maximum": 5},
        "urgent": {"type": "boolean"},
        "notify": {"type": "boolean"},
        "order": {"type": "object", "required": ["id"], "description": "The order."},
        "tags": {"type": "array", "items": {"type": "string"}},
        "reference": {"type": ["string", "null"]},
        "choice": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
    },
}
EXAMPLE = {"message": "Hi", "order": {"id": 7}, "tags": ["a"], "urgent": True}


def form(data=None, **kwargs) -> RunStartForm:
    return RunStartForm(data, schema=SCHEMA, example=kwargs.pop("example", EXAMPLE), **kwargs)


def widget_kinds(f: forms.Form) -> dict[str, str]:
    return {name: type(field.widget).__name__ for name, field in f.fields.items()}


def valid(**values) -> dict[str, str]:
    data = {"input-message": "Hi", "input-order": '{"id": 1}', "input-urgent": "on"}
    data.update({f"input-{k}": v for k, v in values.items()})
    return data


def test_one_field_per_property_of_the_right_kind():
    f = form()
    assert not f.uses_json and f.can_map
    # required ones first, in the schema's required order
    assert list(f.fields)[:3] == ["message", "order", "urgent"]
    assert widget_kinds(f) == {
        "message": "TextInput",
        "order": "CodeTextarea",
        "urgent": "CheckboxInput",
        "story": "Textarea",  # a long string
        "priority": "Select",
        "level": "Select",
        "amount": "NumberInput",
        "copies": "NumberInput",
        "notify": "Select",  # optional boolean: not set / yes / no
        "tags": "CodeTextarea",
        "reference": "CodeTextarea",  # a type union
        "choice": "CodeTextarea",  # a combinator
    }
    for name in ("order", "tags", "reference", "choice"):
        assert isinstance(f.fields[name], SchemaJSONField), name
    assert f.fields["order"].expect is dict and f.fields["tags"].expect is list
    assert [c[0] for c in f.fields["priority"].choices] == ["", "low", "high"]


def test_required_labels_and_descriptions():
    f = form()
    assert f.fields["message"].required and f.fields["order"].required
    assert not f.fields["story"].required and not f.fields["tags"].required
    assert f.fields["message"].label == "Message" and f.fields["copies"].label == "Copies"
    assert f.fields["message"].help_text == "What the customer said."
    assert f.fields["order"].help_text == "The order. JSON: an object ({...})."
    assert f.fields["tags"].help_text == "JSON: a list ([...])."
    html = str(f["message"])
    assert " required" in html and 'aria-describedby="id_input-message_help' in html


def test_example_prefills_fields_and_json_fields():
    f = form()
    assert f["message"].value() == "Hi"
    assert f["order"].value() == '{\n  "id": 7\n}'
    assert f["tags"].value() == '[\n  "a"\n]'


def test_values_are_typed_and_blanks_left_out():
    f = form(
        valid(
            amount="2.5",
            copies="3",
            level="2",
            notify="false",
            tags='["x", "y"]',
            reference="null",
            choice="5",
        )
    )
    assert f.is_valid(), f.errors
    assert f.value() == {
        "message": "Hi",
        "order": {"id": 1},
        "urgent": True,
        "amount": 2.5,
        "copies": 3,
        "level": 2,
        "notify": False,
        "tags": ["x", "y"],
        "choice": 5,
    }  # "reference": null is left out like a blank field


def test_json_fields_check_shape_and_syntax():
    f = form(valid(order="[1]", tags="{", story="x" * 2001))
    assert not f.is_valid()
    assert f.errors["order"] == ["Give an object ({...}) here."]
    assert f.errors["tags"][0].startswith("This is not valid JSON: Expecting property name")
    assert f.errors["story"] == ["Ensure this value has at most 2000 characters (it has 2001)."]
    missing = form(valid(order=""))
    assert not missing.is_valid()
    assert missing.errors["order"] == ["This field is required."]
    empty_object = form(valid(order="{}"))
    assert empty_object.is_valid(), empty_object.errors  # {} is a value, not a blank
    assert empty_object.value()["order"] == {}


def test_service_errors_land_on_their_field():
    f = form(valid())
    assert f.is_valid()
    f.add_service_errors(
        ValidationError(
            {
                "input.order": ["'id' is a required property"],
                "input.tags[1]": ["3 is not of type 'string'"],
                "input": ["Additional properties are not allowed ('x' was unexpected)"],
            }
        )
    )
    assert f.errors["order"] == ["'id' is a required property"]
    assert f.errors["tags"] == ["tags[1]: 3 is not of type 'string'"]
    assert f.non_field_errors() == ["Additional properties are not allowed ('x' was unexpected)"]


def test_raw_mode_is_one_json_textarea_with_the_example():
    f = form(raw=True)
    assert f.uses_json and f.can_map
    assert list(f.fields) == ["json"]
    assert json.loads(f["json"].value()) == EXAMPLE
    bound = form({"input-json": '{"message": "x", "extra": 1}'}, raw=True)
    assert bound.is_valid()
    assert bound.value() == {"message": "x", "extra": 1}


def test_a_root_combinator_can_only_be_json():
    f = RunStartForm(schema={"type": "object", "anyOf": [{"required": ["a"]}]}, example=None)
    assert f.uses_json and not f.can_map
    assert RunStartForm(schema={"type": "string"}).uses_json
    assert RunStartForm(schema={"type": "object"}).uses_json  # no properties to show


def test_other_schema_forms_keep_one_json_textarea_for_complex_schemas():
    # a human agent's answer form does not opt in to JSON fields
    f = SchemaForm(schema={"type": "object", "properties": {"lines": {"type": "array"}}})
    assert f.uses_json and list(f.fields) == ["json"]
