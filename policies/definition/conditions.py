"""Rule conditions: CEL compiled against ``CONDITION_VARIABLES``, with the checks that keep
a condition cheap to run (no comprehensions, small literal regular expressions). Pure."""

from __future__ import annotations

from typing import Any

import cel
import re2

from policies.definition.schema import CONDITION_VARIABLES


def compile_condition(source: str) -> tuple[Any, str | None]:
    """The compiled CEL program, or None and a message saying what is wrong."""
    try:
        program = cel.compile(source)
    except (ValueError, RuntimeError) as exc:
        return None, str(exc).replace("\n", " ")
    unknown = sorted(set(program.variables()) - set(CONDITION_VARIABLES))
    if unknown:
        names = ", ".join(unknown)
        return None, (
            f"Unknown variable {names}: a condition may use " + ", ".join(CONDITION_VARIABLES)
        )
    return program, None


# CEL's ``matches`` runs Rust's regex crate: linear time, no backreferences or lookaround, but
# it compiles the pattern on every evaluation, so a literal pattern is checked at save: it
# must compile, and compile small (a{1000}a{1000}a{1000} cost 0.12 s per policy check).
MAX_CEL_PATTERN_PROGRAM = 2000  # RE2 program size, as a measure of the compiled pattern
_CEL_STRING = (
    r"(?:[rR][bB]?|[bB][rR]?)?"
    r'(?:""".*?"""'
    r"|'''.*?'''"
    r'|"(?:\\.|[^"\\\n])*"'
    r"|'(?:\\.|[^'\\\n])*')"
)
_CEL_TOKEN = re2.compile(
    rf"(?s)(?P<str>{_CEL_STRING})|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[(),.])|\S"
)
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


def _literal_patterns(source: str) -> list[str]:
    """String literals given as the pattern of ``x.matches(...)`` or ``matches(x, ...)``."""
    tokens = [(m.lastgroup or "", m.group()) for m in _CEL_TOKEN.finditer(source)]
    found = []
    for i, token in enumerate(tokens):
        if token != ("name", "matches") or tokens[i + 1 : i + 2] != [("punct", "(")]:
            continue
        j = i + 2
        if i == 0 or tokens[i - 1] != ("punct", "."):  # function form: skip the first argument
            depth = 0
            while j < len(tokens) and not (depth == 0 and tokens[j] == ("punct", ",")):
                depth += {("punct", "("): 1, ("punct", ")"): -1}.get(tokens[j], 0)
                j += 1
            j += 1
        if (
            tokens[j : j + 1]
            and tokens[j][0] == "str"
            and tokens[j + 1 : j + 2] == [("punct", ")")]
        ):
            found.append(tokens[j][1])
    return found


_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})


def _macro_problem(source: str) -> str | None:
    """Refuse CEL comprehensions: ``args.a.all(tool, args.b.all(model, ...))`` costs the
    product of two argument lists' sizes, and CEL runs it holding the interpreter (a
    3,000-item list took 12 s), so no step timeout can stop it."""
    tokens = [(m.lastgroup or "", m.group()) for m in _CEL_TOKEN.finditer(source)]
    for i, token in enumerate(tokens[1:-1], start=1):
        called = tokens[i - 1] == ("punct", ".") and tokens[i + 1] == ("punct", "(")
        if token[0] == "name" and token[1] in _MACROS and called:
            return (
                f"{token[1]}() is not allowed in a policy condition: comprehensions over "
                "lists (all, exists, exists_one, map, filter) cost as much as the lists "
                "the call sends; test list membership with `in` instead."
            )
    return None


def _pattern_problem(literal: str) -> str | None:
    """Why CEL cannot run the pattern ``literal`` (CEL source text) cheaply; None when it can."""
    try:
        cel.compile(f'"".matches({literal})').execute({})
    except (ValueError, RuntimeError) as exc:
        text = str(exc)
        reason = text.rsplit("error: ", 1)[-1]
        reason = reason.split(". Check function arguments", 1)[0].strip().splitlines()[-1]
        return f"The regular expression {literal} cannot be used: {reason.rstrip('.')}."
    pattern = cel.compile(literal).execute({})
    if not isinstance(pattern, str):
        return None
    try:
        size = re2.compile(pattern, _RE2_OPTIONS).programsize
    except re2.error:
        return None  # syntax RE2 lacks but CEL has: CEL's own size limit still applies
    if size > MAX_CEL_PATTERN_PROGRAM:
        return (
            f"The regular expression {literal} is too complex ({size} instructions, the limit "
            f"is {MAX_CEL_PATTERN_PROGRAM}): use fewer or shorter repeats."
        )
    return None


def condition_problems(source: str) -> list[str]:
    """What is wrong with the condition ``source`` ([] when nothing): it must compile, read
    only ``CONDITION_VARIABLES``, use no comprehension, and give ``matches`` only literal
    patterns that CEL can run cheaply."""
    _, problem = compile_condition(source)
    problem = _macro_problem(source) or problem
    if problem:
        return [problem]
    return [m for m in map(_pattern_problem, _literal_patterns(source)) if m]
