"""Templates cannot build huge values or do unbounded work (issue 11 item 7). Pure, no DB.

``{{ (['x'*1000000]*10)|join|length }}`` gave 10,000,000: the 1M limit on ``*`` was
bypassed by nesting. Every value an expression builds is now measured by its expanded size
(shared parts counted each time), and one render has a work budget.
"""

import pytest

from runs.engine.templating import (
    MAX_RENDER_WORK,
    MAX_SEQUENCE_LENGTH,
    TemplateError,
    render,
    size_of,
)

BIG = "x" * 900_000
SCOPE = {"input": {"m": "hello", "items": [1, 2, 3], "big": BIG}}


@pytest.mark.parametrize(
    "template",
    [
        "{{ (['x'*1000000]*10)|join|length }}",  # the example
        "{{ (['x'*100000]*10)|join('y'*100000) }}",  # separators count
        "{{ ['x'*1000]*1000 }}",  # list repetition counts what the list holds
        "{{ [['x'*100]*100]*100 }}",
        "{{ ('x'*600000) + ('y'*600000) }}",
        "{{ ('x'*600000) ~ ('y'*600000) }}",
        "{{ [input.big, input.big] }}",  # literals count what they hold
        "{{ {'a': input.big, 'b': input.big} }}",
        "{{ [input.big, input.big]|length }}",
        "{{ (input.big, input.big) }}",
        "{{ input.big ~ input.big }}",
        "{{ [input.big][0:1] + [input.big] }}",
        "{{ (['x'*500000]*1)|tojson ~ input.big }}",
        "{{ ('x'*600000)|upper ~ ('x'*600000)|lower }}",
    ],
)
def test_nothing_an_expression_builds_passes_the_size_limit(template):
    with pytest.raises(TemplateError, match="would be too long: more than 1,000,000") as caught:
        render({"a": [template]}, SCOPE)
    assert caught.value.path == "a[0]"


def test_text_of_several_parts_is_bounded_too():
    with pytest.raises(TemplateError, match="text would be too long: more than 1,000,000"):
        render("{{ input.big }} and {{ input.big }}", SCOPE)
    with pytest.raises(TemplateError, match="text would be too long: more than 1,000,000"):
        render("{{ input.items }} {{ [input.big] }}", {"input": {"items": [BIG], "big": BIG}})


def test_work_per_render_is_bounded_across_expressions():
    # each expression is within the size limit; together they are 20 x 900,000
    many = {f"k{i}": "{{ ('x'*900000)|length }}" for i in range(20)}
    with pytest.raises(TemplateError, match=f"at most {MAX_RENDER_WORK:,}"):
        render(many, {})
    compares = "{{ [" + ", ".join(["input.big == input.big"] * 20) + "] }}"
    with pytest.raises(TemplateError, match="too much work"):
        render(compares, SCOPE)
    # the budget is per render: the same template in a second render starts afresh
    assert render({f"k{i}": "{{ ('x'*900000)|length }}" for i in range(5)}, {})["k4"] == 900_000


def test_values_passed_through_from_the_scope_are_not_limited():
    huge = {"doc": "y" * (3 * MAX_SEQUENCE_LENGTH), "rows": list(range(2 * MAX_SEQUENCE_LENGTH))}
    scope = {"input": huge}
    assert render("{{ input.doc }}", scope) is huge["doc"]
    assert render("{{ input.rows | length }}", scope) == 2 * MAX_SEQUENCE_LENGTH
    assert render({"a": "{{ input.doc }}", "b": "{{ input.doc | length }}"}, scope)["b"] == len(
        huge["doc"]
    )


def test_ordinary_templates_are_unchanged():
    assert render("{{ input.m|upper }} {{ input.items|join(',') }}", SCOPE) == "HELLO 1,2,3"
    assert render("{{ input.items ~ '!' }}", SCOPE) == "[1, 2, 3]!"
    assert render("{{ input.items[0:2] + [9] }}", SCOPE) == [1, 2, 9]
    assert render("{{ {'a': input.m, 'b': (1, 2)} }}", SCOPE) == {"a": "hello", "b": [1, 2]}
    assert render("{{ 'ell' in input.m and input.m != 'x' }}", SCOPE) is True
    assert render("{{ ('ab' * 500000)|length }}", {}) == MAX_SEQUENCE_LENGTH
    assert render("{{ input.big|upper|length }}", SCOPE) == len(BIG)


def test_size_of_counts_shared_parts_every_time_and_stops_early():
    x = "x" * 1000
    assert size_of([x, x]) == 1 + 2 + 2000
    assert size_of({"k": x}) == 1 + 2 + 1 + 1000
    shared = [x] * 1000
    nested = [shared] * 1000  # a billion characters when printed, built in microseconds
    assert size_of(nested, limit=10_000) > 10_000
