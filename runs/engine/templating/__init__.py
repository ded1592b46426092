"""Templated JSON: ``{{ expression }}`` inside strings, evaluated safely over a scope. Pure.

``render(value, scope)`` walks JSON (objects, lists, strings; object keys are left as
written). In a string each ``{{ expression }}`` is evaluated over ``scope``, whose names
are ``input`` (the run input), ``steps`` (``steps.<id>.output``), ``context`` and the
step-local names (``item``, ``index``, ``previous``, ``iteration``). A string that is
exactly one ``{{ ... }}`` (nothing around it, not even spaces) gives the value with its JSON
type; any other string gives text, with non-string values JSON-encoded (``true``, ``null``,
``[1, 2]``). Write ``{{ '{{' }}`` for literal braces.

Expressions are Jinja2 expressions (no ``{% %}`` blocks) run in a locked-down sandbox:

* attribute and index access look up object keys and list indexes only, never Python
  attributes (``input.items`` is the key ``items``; ``input.__class__`` is refused);
  ``input["odd-key"]`` and ``input.items[0]`` / ``input.items[-1]`` work;
* no calls at all (``x.upper()``, ``range(9)``): transformations are the filters in
  ``FILTERS`` (``tojson``, ``default``, ``length``, ``join``, ``lower``, ``upper``, ``first``,
  ``last``, ``trim``, ``string``, ``int``, ``float``, ``round``, ``abs``) and the tests in
  ``TESTS`` (``x is defined`` ...);
* ``**``, ``*`` and ``%`` refuse results that would be huge and ``%``-formatting of text;
* every string, list or object an expression builds (``*``, ``+``, ``~``, list and object
  literals, slices, ``join``, ``string``, ``tojson``, ``lower``, ``upper``, ``trim``, and the
  text of a template with several parts) is at most ``MAX_SEQUENCE_LENGTH`` long, counted
  as its expanded size (characters of text plus one per element, key and number, each
  shared part counted every time it appears), and one ``render`` builds, compares and
  converts at most ``MAX_RENDER_WORK`` of that in all; values passed through unchanged
  from the scope are not limited;
* rendering a value never evaluates the value: text from the run input is data, so a user
  who types ``{{ ... }}`` into an input field only ever gets those characters back.

A name, key or index that does not exist raises ``TemplateError(path, message)`` naming the
expression, unless a ``default`` filter (``{{ input.tone | default("friendly") }}``) or an
``is defined`` test handles it. Each template string and each expression is parsed and
compiled once (LRU caches), so rendering the same definition again costs only evaluation.

``references(value)`` gives the name chains a value's templates use, read from the parsed
syntax tree (``{{ steps.triage.output.route }}`` -> ``("steps", "triage", "output",
"route")``), for validation without running anything.

Modules: ``parsing`` (split, parse, check, compile, read name chains), ``rendering``
(evaluation), ``sandbox`` (the Jinja environment), ``filters`` (filters, tests, JSON
conversion), ``limits`` (sizes and the work budget), ``errors`` (``TemplateError``, paths).
"""

from runs.engine.templating.errors import TemplateError, join_path
from runs.engine.templating.filters import FILTERS, TESTS
from runs.engine.templating.limits import (
    MAX_INT_BITS,
    MAX_RENDER_WORK,
    MAX_SEQUENCE_LENGTH,
    size_of,
)
from runs.engine.templating.parsing import is_single_expression, references, template_strings
from runs.engine.templating.rendering import render

__all__ = [
    "FILTERS",
    "MAX_INT_BITS",
    "MAX_RENDER_WORK",
    "MAX_SEQUENCE_LENGTH",
    "TESTS",
    "TemplateError",
    "is_single_expression",
    "join_path",
    "references",
    "render",
    "size_of",
    "template_strings",
]
