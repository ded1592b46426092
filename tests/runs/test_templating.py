"""Templated JSON: type preservation, text, lookups, filters, missing names, the sandbox. No DB."""

import pytest
from jinja2.runtime import Undefined

from runs.engine.templating import (
    TemplateError,
    is_single_expression,
    join_path,
    parsing,
    references,
    render,
    sandbox,
    template_strings,
)

SCOPE = {
    "input": {
        "message": "Refund my order",
        "count": 3,
        "ratio": 0.5,
        "urgent": True,
        "note": None,
        "items": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        "tags": ["x", "y"],
        "odd-key": "odd",
        "customer": {"name": "Ada", "tier": "gold"},
    },
    "steps": {"triage": {"output": {"route": "billing", "score": 0.9}}},
    "context": {"locale": "en"},
}


# --- types -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ input.count }}", 3),
        ("{{ input.ratio }}", 0.5),
        ("{{ input.urgent }}", True),
        ("{{ input.note }}", None),
        ("{{ input.customer }}", {"name": "Ada", "tier": "gold"}),
        ("{{ input.tags }}", ["x", "y"]),
        ("{{ input.message }}", "Refund my order"),
        ("{{ steps.triage.output }}", {"route": "billing", "score": 0.9}),
        ("{{ (1, 2) }}", [1, 2]),
        ('{{ {"a": {"b": [1]}} }}', {"a": {"b": [1]}}),
        ("{{ input.count + 1 }}", 4),
        ("{{ input.count > 2 }}", True),
    ],
)
def test_a_string_that_is_one_expression_keeps_the_json_type(template, expected):
    result = render(template, SCOPE)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("n={{ input.count }}", "n=3"),
        ("{{ input.urgent }}!", "true!"),
        ("note: {{ input.note }}", "note: null"),
        ("tags: {{ input.tags }}", 'tags: ["x", "y"]'),
        ("c: {{ input.customer }}", 'c: {"name": "Ada", "tier": "gold"}'),
        ("Hi {{ input.customer.name }}, re: {{ input.message }}", "Hi Ada, re: Refund my order"),
        ("{{ input.count }}{{ input.count }}", "33"),
        (" {{ input.count }}", " 3"),
    ],
)
def test_any_other_template_string_gives_text_with_non_strings_as_json(template, expected):
    assert render(template, SCOPE) == expected


def test_walks_objects_and_lists_leaving_keys_and_other_values_alone():
    value = {
        "{{ input.count }}": "{{ input.count }}",
        "list": ["{{ input.tags[0] }}", 7, None, False, {"deep": "{{ context.locale }}"}],
        "plain": "no template",
        "number": 1.5,
    }
    assert render(value, SCOPE) == {
        "{{ input.count }}": 3,
        "list": ["x", 7, None, False, {"deep": "en"}],
        "plain": "no template",
        "number": 1.5,
    }


def test_scalars_and_strings_without_templates_come_back_unchanged():
    assert render(42, SCOPE) == 42
    assert render(None, SCOPE) is None
    assert render("just text } {", SCOPE) == "just text } {"


# --- lookups ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ steps.triage.output.route }}", "billing"),
        ('{{ steps["triage"]["output"]["route"] }}', "billing"),
        ("{{ input.items[0].name }}", "a"),
        ("{{ input.items[-1].name }}", "c"),
        ("{{ input.items.1.name }}", "b"),
        ("{{ input.items[1:] | length }}", 2),
        ('{{ input["odd-key"] }}', "odd"),
        ("{{ input.message[0] }}", "R"),
        ("{{ context.locale }}", "en"),
    ],
)
def test_attribute_and_index_access(template, expected):
    assert render(template, SCOPE) == expected


def test_step_local_names_are_plain_scope_names():
    scope = {"item": {"id": 7}, "index": 2, "previous": None, "iteration": 3}
    assert render("{{ item.id }}-{{ index }}-{{ iteration }}", scope) == "7-2-3"
    assert render("{{ previous }}", scope) is None


def test_dot_lookup_reads_keys_never_python_attributes():
    scope = {"input": {"items": "the key, not dict.items"}}
    assert render("{{ input.items }}", scope) == "the key, not dict.items"
    with pytest.raises(TemplateError, match="no key 'keys'"):
        render("{{ input.keys }}", scope)


# --- filters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ input.customer | tojson }}", '{"name": "Ada", "tier": "gold"}'),
        ("{{ input.tags | tojson }}", '["x", "y"]'),
        ("{{ input.message | tojson }}", '"Refund my order"'),
        ('{{ input.missing | default("friendly") }}', "friendly"),
        ("{{ input.missing.deeper | default(5) }}", 5),
        ("{{ steps.nope.output | default(none) }}", None),
        ('{{ input.message | default("x") }}', "Refund my order"),
        ('{{ "" | default("empty", true) }}', "empty"),
        ("{{ input.items | length }}", 3),
        ("{{ input.customer | length }}", 2),
        ("{{ input.message | length }}", 15),
        ('{{ input.tags | join(", ") }}', "x, y"),
        ('{{ input.items | join("/", attribute="name") }}', "a/b/c"),
        ("{{ input.message | lower }}", "refund my order"),
        ("{{ input.message | upper }}", "REFUND MY ORDER"),
        ("{{ input.items | first }}", {"name": "a"}),
        ("{{ input.items | last }}", {"name": "c"}),
        ('{{ "  pad  " | trim }}', "pad"),
        ('{{ "42" | int }}', 42),
        ("{{ input.ratio | string }}", "0.5"),
        ("{{ input.x is defined }}", False),
        ("{{ input.count is number }}", True),
    ],
)
def test_filters_and_tests(template, expected):
    result = render(template, SCOPE)
    assert result == expected
    assert type(result) is type(expected)


def test_tojson_of_a_missing_value_is_an_error_not_null():
    with pytest.raises(TemplateError, match="no key 'nope'"):
        render("{{ input.nope | tojson }}", SCOPE)


def test_unknown_filter_is_refused():
    with pytest.raises(TemplateError, match="unknown filter 'attr'"):
        render('{{ input | attr("__class__") }}', SCOPE)


# --- missing names ---------------------------------------------------------------------------


def test_missing_key_names_the_expression_and_the_path():
    with pytest.raises(TemplateError) as caught:
        render({"body": {"text": "Hello {{ input.nickname }}"}}, SCOPE, "steps[0].input")
    assert caught.value.path == "steps[0].input.body.text"
    assert "{{ input.nickname }}" in caught.value.message
    assert "no key 'nickname'" in caught.value.message
    assert str(caught.value).startswith("steps[0].input.body.text: ")


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{{ nothing }}", "'nothing' is not defined"),
        ("{{ steps.summarize.output }}", "no key 'summarize'"),
        ("{{ input.items[9] }}", "index 9 is out of range"),
        ("{{ input.customer.name.first }}", "no key 'first'"),
        ("{{ input.missing.deeper }}", "no key 'missing'"),
        ("{{ [input.missing] }}", "no key 'missing'"),
        ("{{ input.missing | length }}", "no key 'missing'"),
        ("{{ input.missing ~ 'x' }}", "no key 'missing'"),
    ],
)
def test_missing_names_keys_and_indexes_raise(template, fragment):
    with pytest.raises(TemplateError, match=fragment):
        render(template, SCOPE)


def test_list_paths_in_errors():
    with pytest.raises(TemplateError) as caught:
        render(["ok", {"a": ["{{ x }}"]}], {})
    assert caught.value.path == "[1].a[0]"


def test_runtime_failures_become_template_errors():
    with pytest.raises(TemplateError, match="ZeroDivisionError"):
        render("{{ input.count / 0 }}", SCOPE)
    with pytest.raises(TemplateError, match="not a JSON number"):
        render("{{ 1e308 * 10 }}", SCOPE)


# --- syntax ----------------------------------------------------------------------------------


def test_literal_braces_and_braces_inside_expressions():
    assert render("{{ '{{' }} not a template {{ '}}' }}", SCOPE) == "{{ not a template }}"
    assert render('{{ {"a": {"b": 1}} }}', SCOPE) == {"a": {"b": 1}}
    assert render("{{ '}}' }}", SCOPE) == "}}"


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("Hello {{ input.message", "never closed"),
        ("{{ }}", "empty"),
        ("{{ input. }}", "syntax error"),
        ("{{ a b }}", "unexpected 'b'"),
        ("{% if x %}y{% endif %}{{", "never closed"),
        ("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}", "nested too deeply"),
    ],
)
def test_templates_that_do_not_parse(template, fragment):
    with pytest.raises(TemplateError, match=fragment) as caught:
        render({"m": template}, SCOPE)
    assert caught.value.path == "m"


def test_block_syntax_is_just_text():
    assert render("{% if true %}x{% endif %} {{ 1 }}", {}) == "{% if true %}x{% endif %} 1"


# --- the sandbox -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{{ input.__class__ }}", "'__class__' is not allowed"),
        ("{{ ''.__class__.__mro__ }}", "is not allowed"),
        ("{{ input._private }}", "'_private' is not allowed"),
        ("{{ input.message.upper() }}", "calls are not allowed"),
        ("{{ input.items() }}", "calls are not allowed"),
        ("{{ range(10) }}", "calls are not allowed"),
        ("{{ input | default(range(3)) }}", "calls are not allowed"),
        ("{{ self }}", "'self' is reserved"),
        ("{{ lipsum }}", "'lipsum' is not defined"),
        ("{{ cycler }}", "'cycler' is not defined"),
        ("{{ namespace }}", "'namespace' is not defined"),
        ('{{ input["__class__"] }}', "no key '__class__'"),
        ('{{ input.items | join(",", attribute="__class__") }}', "no key '__class__'"),
        ("{{ 9 ** 9 ** 9 ** 9 }}", "too large"),
        ("{{ 'a' * 1000000000 }}", "too long"),
        ("{{ [0] * 1000000000 }}", "too long"),
        ("{{ '%s%s' % (1, 2) }}", "formatting of text is not allowed"),
    ],
)
def test_sandbox_refuses_escapes_and_bombs(template, fragment):
    with pytest.raises(TemplateError, match=fragment):
        render(template, SCOPE)


def test_user_input_is_data_never_a_template():
    scope = {"input": {"message": "{{ ''.__class__.__mro__ }} {{ 7 * 7 }}"}}
    assert render("{{ input.message }}", scope) == "{{ ''.__class__.__mro__ }} {{ 7 * 7 }}"
    assert render("said: {{ input.message }}", scope) == (
        "said: {{ ''.__class__.__mro__ }} {{ 7 * 7 }}"
    )


def test_safe_arithmetic_still_works():
    assert render("{{ 2 ** 10 }} {{ 'ab' * 2 }} {{ 7 % 3 }} {{ 3 * 4 }}", {}) == "1024 abab 1 12"


# --- references ------------------------------------------------------------------------------


def test_references_read_name_chains_from_the_syntax_tree():
    value = {
        "a": "{{ steps.triage.output.route }} and {{ input.message }}",
        "b": ['{{ input["odd-key"] }}', "{{ input.items[0].name }}", "{{ item }}"],
        "c": "{{ steps[input.which].output | default(context.fallback) }}",
        "d": "no template",
        "e": 5,
    }
    assert references(value) == {
        ("steps", "triage", "output", "route"),
        ("input", "message"),
        ("input", "odd-key"),
        ("input", "items"),
        ("item",),
        ("steps",),
        ("input", "which"),
        ("context", "fallback"),
    }


def test_references_of_values_without_templates_are_empty():
    assert references({"a": [1, "text", None]}) == set()


def test_references_do_not_evaluate_and_report_bad_templates_with_their_path():
    assert references("{{ 9 ** 9 ** 9 ** 9 }} {{ previous.x if iteration > 1 else none }}") == {
        ("previous", "x"),
        ("iteration",),
    }
    with pytest.raises(TemplateError) as caught:
        references({"x": ["ok", "{{ input.upper() }}"]}, "steps[3].input")
    assert caught.value.path == "steps[3].input.x[1]"
    assert "calls are not allowed" in caught.value.message


def test_template_strings_lists_each_template_with_its_path():
    value = {"a": "{{ x }}", "b": ["plain", "{{ y }}"], "odd key": "{{ z }}"}
    assert list(template_strings(value, "input")) == [
        ("input.a", "{{ x }}"),
        ("input.b[1]", "{{ y }}"),
        ('input["odd key"]', "{{ z }}"),
    ]


def test_is_single_expression():
    assert is_single_expression("{{ input.items }}")
    assert not is_single_expression(" {{ input.items }}")
    assert not is_single_expression("{{ a }}{{ b }}")
    assert not is_single_expression("no template")
    assert not is_single_expression("{{ broken")
    assert not is_single_expression(["{{ a }}"])


def test_join_path():
    assert join_path("", "steps") == "steps"
    assert join_path("steps", 2) == "steps[2]"
    assert join_path("steps[2]", "input") == "steps[2].input"
    assert join_path("input", "a.b") == 'input["a.b"]'


def test_each_template_string_is_parsed_once():
    template = "cache probe {{ input.count }} {{ input.ratio }}"
    render(template, SCOPE)
    before = parsing.parse_template.cache_info()
    for _ in range(5):
        assert render(template, SCOPE) == "cache probe 3 0.5"
    after = parsing.parse_template.cache_info()
    assert after.misses == before.misses
    assert after.hits == before.hits + 5


def test_the_environment_itself_refuses_calls_and_private_names():
    # Second line of defence, below the parse-time checks that render() applies first.
    from jinja2.exceptions import SecurityError

    expression = sandbox.ENV.compile_expression("s.upper()")
    with pytest.raises(SecurityError, match="calls are not allowed"):
        expression(s="text")
    with pytest.raises(SecurityError, match="not allowed"):
        sandbox.ENV.getattr("text", "__class__")
    assert isinstance(sandbox.ENV.getattr("text", "upper"), Undefined)
