"""Dashboard forms of workflows and runs. They parse what a person typed; services write.

A definition is edited as JSON text; what only validation can judge comes back from
``runs.services`` as a ``ValidationError`` keyed by path (``definition.steps[1].agent``)
and lands next to the definition field with its path kept.

``SchemaForm`` turns the JSON Schema of a run's input (or of a human agent's answer) into
fields: strings, numbers, integers, booleans and enums of scalars, labelled with their
``title``. With ``json_fields`` (the start form) a property it cannot express as a plain
field (an object, an array, a combinator, a type union) gets a JSON textarea of its own;
without it such a schema falls back to one JSON textarea for the whole value, as does a
schema whose root has combinators, or a form the person switched to JSON (``raw``).
Either way the service validates the value against the whole schema, and its errors are
put next to the field they name.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

from controlplane.dashboard.forms import (
    DashboardForm,
    JSONTextField,
    NamedForm,
    note_field,
    tags_field,
)

SIMPLE_TYPES = ("string", "number", "integer", "boolean")
JSON_FIELD = "json"  # the one field of a schema given as JSON
# root keywords a list of fields cannot honour: such schemas are edited as JSON
COMPLEX_KEYWORDS = (
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "dependentRequired",
    "dependentSchemas",
    "patternProperties",
    "$ref",
)
ANSWER_PATH = re.compile(r"^(\(root\)|[\w-]+(/[\w-]+)*)$")
LONG_TEXT = 200  # strings allowed to be longer than this get a textarea


# schema forms ------------------------------------------------------------------------------


class JSONNumberField(forms.FloatField):
    """A JSON number: a whole number stays an int (120, not 120.0)."""

    def to_python(self, value):
        number = super().to_python(value)
        if number is not None and number.is_integer() and abs(number) < 2**53:
            return int(number)
        return number


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _plain(spec: Any) -> bool:
    """Whether a property can be a plain field (text, number, checkbox, select)."""
    if not isinstance(spec, dict) or any(key in spec for key in COMPLEX_KEYWORDS):
        return False
    if "enum" in spec:
        values = spec["enum"]
        return isinstance(values, list) and bool(values) and all(map(_scalar, values))
    return spec.get("type") in SIMPLE_TYPES


def simple_properties(
    schema: Any, *, json_fields: bool = False
) -> list[tuple[str, dict[str, Any]]] | None:
    """The properties of ``schema`` as fields, else None (the whole value is typed as JSON).

    Without ``json_fields`` every property must be a plain field; with it, the others
    come back too and become JSON textareas (see ``SchemaForm``).
    """
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        return None
    if any(key in schema for key in COMPLEX_KEYWORDS):
        return None
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties:
        return None
    # PostgreSQL keeps object keys in its own order, so the required ones (a list) lead
    required = [n for n in schema.get("required") or [] if isinstance(n, str) and n in properties]
    names = list(dict.fromkeys([*required, *properties]))
    found = []
    for name in names:
        spec = properties[name]
        if not _plain(spec):
            if not json_fields:
                return None
            spec = spec if isinstance(spec, dict) else {}
        found.append((name, spec))
    return found


JSON_SHAPES = {"object": "an object ({...})", "array": "a list ([...])"}


class SchemaJSONField(JSONTextField):
    """One property typed as JSON; blank leaves the property out (or is "required")."""

    def validate(self, value):
        # {} and [] are values here, not "empty"
        if value is None and self.required:
            raise ValidationError(self.error_messages["required"], code="required")

    def prepare_value(self, value):
        return value  # the initial value is already JSON text, bound data is what was typed


def json_property_field(spec: dict[str, Any], *, required: bool, label: str) -> forms.Field:
    kind = spec.get("type")
    expect = dict if kind == "object" else list if kind == "array" else object
    shape = JSON_SHAPES.get(kind, "any JSON value") if isinstance(kind, str) else "JSON"
    help_text = " ".join(
        part for part in (str(spec.get("description") or ""), f"JSON: {shape}.") if part
    )
    return SchemaJSONField(
        expect=expect, required=required, label=label, help_text=help_text, rows=4
    )


def _label(name: str, spec: dict[str, Any]) -> str:
    title = spec.get("title")
    return str(title) if title else name.replace("_", " ").capitalize()


def schema_field(spec: dict[str, Any], *, required: bool, label: str) -> forms.Field:
    """One form field for a simple property ``spec``."""
    common: dict[str, Any] = {"required": required, "label": label}
    if spec.get("description"):
        common["help_text"] = str(spec["description"])
    if "enum" in spec:
        values = spec["enum"]
        plain = all(isinstance(v, str) for v in values)
        choices = [(v if plain else json.dumps(v), str(v)) for v in values]
        if not required:
            choices.insert(0, ("", "Not set"))
        return forms.TypedChoiceField(
            choices=choices,
            coerce=(lambda v: v) if plain else json.loads,
            empty_value=None,
            **common,
        )
    kind = spec["type"]
    if kind == "boolean":
        if required:  # a checkbox always says yes or no
            common["required"] = False
            return forms.BooleanField(**common)
        return forms.TypedChoiceField(
            choices=[("", "Not set"), ("true", "Yes"), ("false", "No")],
            coerce=lambda v: v == "true",
            empty_value=None,
            **common,
        )
    if kind in ("number", "integer"):
        limits = {
            "min_value": spec.get("minimum"),
            "max_value": spec.get("maximum"),
        }
        limits = {k: v for k, v in limits.items() if isinstance(v, int | float)}
        if kind == "integer":
            return forms.IntegerField(**common, **limits)
        return JSONNumberField(**common, **limits, widget=forms.NumberInput(attrs={"step": "any"}))
    max_length = spec.get("maxLength") if isinstance(spec.get("maxLength"), int) else None
    min_length = spec.get("minLength") if isinstance(spec.get("minLength"), int) else None
    widget: forms.Widget = forms.TextInput()
    if max_length is not None and max_length > LONG_TEXT:
        widget = forms.Textarea(attrs={"rows": 3})
    elif spec.get("format") == "email":
        widget = forms.EmailInput()
    elif spec.get("format") == "date":
        widget = forms.DateInput(attrs={"type": "date"})
    return forms.CharField(
        max_length=max_length, min_length=min_length, widget=widget, strip=False, **common
    )


class SchemaForm(DashboardForm):
    """Fields generated from a JSON Schema of an object, or one JSON textarea.

    ``value()`` (after ``is_valid()``) is the JSON the person gave: an object holding the
    fields that were filled in, or whatever the JSON textarea held. ``root`` is how the
    service names the whole value in its errors (``input``, ``response``).
    """

    json_help = "JSON, checked against the schema when you send it."

    def __init__(
        self,
        *args: Any,
        schema: Any,
        example: Any = None,
        root: str = "input",
        json_label: str = "Input",
        json_fields: bool = False,
        raw: bool = False,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.root = root
        self.schema = schema if isinstance(schema, dict) else {}
        properties = simple_properties(self.schema, json_fields=json_fields)
        self.can_map = properties is not None  # fields are possible (the person chose JSON)
        self.uses_json = properties is None or raw
        if self.uses_json:
            field = JSONTextField(
                expect=object,
                required=False,
                blank_value={},
                rows=8,
                label=json_label,
                help_text=self.json_help,
            )
            self.fields[JSON_FIELD] = field
            if not self.is_bound and example is not None:
                self.initial[JSON_FIELD] = example
        else:
            required = set(self.schema.get("required") or [])
            example = example if isinstance(example, dict) else {}
            for name, spec in properties:
                plain = _plain(spec)
                make = schema_field if plain else json_property_field
                field = make(spec, required=name in required, label=_label(name, spec))
                self.fields[name] = field
                value = example.get(name, spec.get("default"))
                if self.is_bound or value is None:
                    continue
                if not plain:
                    value = json.dumps(value, indent=2, ensure_ascii=False)
                elif "enum" in spec:
                    if not all(isinstance(v, str) for v in spec["enum"]):
                        value = json.dumps(value)
                elif spec["type"] == "boolean" and name not in required:
                    value = "true" if value else "false"
                self.initial[name] = value
        for name, field in self.fields.items():  # the base linked only the fields it knew
            auto_id = self.auto_id % self.add_prefix(name)
            field.widget.attrs["aria-describedby"] = f"{auto_id}_help {auto_id}_errors"

    def value(self) -> Any:
        if self.uses_json:
            return self.cleaned_data[JSON_FIELD]
        data = {}
        for name in self.fields:
            value = self.cleaned_data.get(name)
            if value is None or (value == "" and not self.fields[name].required):
                continue
            data[name] = value
        return data

    def add_service_errors(self, exc: ValidationError) -> None:
        """Errors keyed ``input.amount`` go next to ``amount``; ``input`` errors to the form.

        Messages of the form ``amount: 5 is less than ...`` (an approval's answer) are
        placed the same way.
        """
        if not hasattr(exc, "error_dict"):
            for message in exc.messages:
                self.add_error(None, message)
            self._mark_invalid()
            return
        for key, messages in exc.message_dict.items():
            for message in messages:
                self._place(key, message)
        self._mark_invalid()

    def _place(self, key: str, message: str) -> None:
        original = message
        path = ""
        if key == self.root:
            head, _, rest = message.partition(": ")
            if rest and ANSWER_PATH.match(head):  # "amount/0: ..." from an answer's schema
                path, message = ("" if head == "(root)" else head.replace("/", ".")), rest
        elif key.startswith((f"{self.root}.", f"{self.root}[")):
            path = key[len(self.root) :].lstrip(".")
        if self.uses_json:
            if key == self.root or path:
                where = self.root + (path if path.startswith("[") else f".{path}")
                self.add_error(JSON_FIELD, f"{where}: {message}" if path else message)
            else:
                self.add_error(None, original if key == NON_FIELD_ERRORS else f"{key}: {original}")
            return
        name = path.split(".", 1)[0].split("[", 1)[0]
        if name in self.fields:
            deeper = path[len(name) :]
            self.add_error(name, f"{name}{deeper}: {message}" if deeper else message)
        elif key in (NON_FIELD_ERRORS, self.root) and not path:
            self.add_error(None, message)
        else:
            self.add_error(None, f"{key}: {original}" if key != self.root else original)


# workflows ---------------------------------------------------------------------------------


DEFINITION_HELP = (
    "JSON. Problems are listed by path, e.g. definition.steps[1].agent; nothing is saved "
    "until the whole definition is valid."
)


class WorkflowCreateForm(NamedForm):
    tags = tags_field()
    definition = JSONTextField(expect=dict, rows=20, help_text=DEFINITION_HELP)
    note = note_field()


class WorkflowPublishForm(DashboardForm):
    definition = JSONTextField(
        expect=dict,
        rows=20,
        help_text="The new version's definition (JSON). " + DEFINITION_HELP.split(". ", 1)[1],
    )
    note = note_field("What changed, e.g. “refunds need approval”.")


def definition_example(agent_slug: str | None) -> dict[str, Any]:
    """A valid starting point: one agent step (with one of the tenant's agents) or an approval."""
    schema = {
        "type": "object",
        "required": ["message"],
        "properties": {"message": {"type": "string", "minLength": 1, "title": "Message"}},
    }
    if agent_slug:
        step: dict[str, Any] = {
            "id": "answer",
            "type": "agent",
            "agent": agent_slug,
            "input": "{{ input.message }}",
        }
    else:
        step = {
            "id": "approve",
            "type": "approval",
            "title": "Go ahead with: {{ input.message }}?",
            "approvers": "admin",
        }
    return {
        "input_schema": schema,
        "example_input": {"message": "Hello!"},
        "steps": [step],
        "output": "{{ steps." + step["id"] + ".output }}",
    }


# runs --------------------------------------------------------------------------------------


RAW_PARAM = "input_mode"  # ?input_mode=json: type the whole input as JSON
RAW_JSON = "json"


class RunStartForm(SchemaForm):
    """The input of a new run; ``idempotency_key`` makes a double submit start one run.

    Every property is a field (objects and arrays as JSON textareas); ``raw`` swaps them
    for one JSON textarea, for values the fields cannot say (extra properties).
    """

    def __init__(self, *args: Any, idempotency_key: str = "", **kwargs: Any):
        super().__init__(*args, prefix="input", json_fields=True, **kwargs)
        self.idempotency_key = (self.data.get("idempotency_key") or idempotency_key)[:200]
