"""Model-facing text is parsed in linear time (issue 11 item 2): fenced JSON, simulator scripts.

``json_text`` used ``re.fullmatch(r"```(?:json)?\\s*(.*?)\\s*```", ..., re.DOTALL)``: a fence
followed by 20,000 spaces and no closing fence ran for more than ten minutes holding the
interpreter, and a model's answer (or a tenant's provider endpoint) chooses that text.
"""

import itertools
import json
import re

from agents.providers.base import json_text

_OLD = re.compile(r"```(?:json)?\s*(.*?)\s*```", flags=re.DOTALL)


def _old_json_text(text):
    fenced = _OLD.fullmatch(text.strip())
    if fenced:
        try:
            json.loads(fenced.group(1))
        except ValueError:
            return text
        return fenced.group(1)
    return text


def test_a_fence_followed_by_whitespace_answers_at_once():
    text = "```" + " " * 20_000 + "x"
    assert json_text(text) == text
    assert json_text("```json" + "\n" * 50_000 + "```") == "```json" + "\n" * 50_000 + "```"


def test_fenced_json_is_unwrapped_as_before():
    assert json_text('```json\n{"a": 1}\n```') == '{"a": 1}'
    assert json_text("  ```\n[1, 2]\n   ```\n") == "[1, 2]"
    assert json_text('{"plain": true}') == '{"plain": true}'
    assert json_text("```json\nnot json\n```") == "```json\nnot json\n```"


def test_same_answers_as_the_regex_on_every_short_text():
    alphabet = ["`", " ", "\n", "json", "1", "{}", '"a"']
    for size in range(1, 7):
        for parts in itertools.product(alphabet, repeat=size):
            text = "".join(parts)
            assert json_text(text) == _old_json_text(text), repr(text)


def test_simulated_script_lines_are_found_in_linear_time_with_the_same_groups():
    from agents.providers.simulated import SCRIPT_LINE

    old = re.compile(r"^\s*SIMULATE call (\S+)\s*(.*?)\s*$", re.MULTILINE)
    prompt = 'You help.\n\n  SIMULATE call kb {"q": 1}\n\t\nSIMULATE call calc\n \nSIMULATE  x'
    assert SCRIPT_LINE.findall(prompt) == old.findall(prompt)
    assert SCRIPT_LINE.findall(prompt)[0] == ("kb", '{"q": 1}')
    assert SCRIPT_LINE.findall("\n" * 100_000 + "x") == []  # 15 s with the old pattern
