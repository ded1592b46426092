"""What a template may build and spend: sizes, the per-render work budget, checks. Pure.

Every operation that builds or compares a value charges its expanded size (``size_of``) to
the ``render`` call under way (``current_work``); ``within`` refuses a value over
``MAX_SEQUENCE_LENGTH`` and ``charge`` a render over ``MAX_RENDER_WORK``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from typing import Any

from jinja2.exceptions import SecurityError

MAX_SEQUENCE_LENGTH = 1_000_000  # largest string, list or object an expression may build
MAX_RENDER_WORK = 10_000_000  # what one render may build, compare and convert in all
MAX_INT_BITS = 1024  # largest integer that * and ** may build

# Work done by the current ``render`` call; None outside one (compile-time constant folding).
current_work: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "template_work", default=None
)


def is_int(x: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(x, int) and not isinstance(x, bool)


def size_of(value: Any, limit: int = MAX_SEQUENCE_LENGTH) -> int:
    """The expanded size of ``value``, counted only until it passes ``limit``.

    Characters of text, plus one per list element, object key and other value, every shared
    part counted each time it appears (``[x] * 3`` counts ``x`` three times), so it measures
    what printing or converting the value costs. Stops early: cost at most ``limit`` steps.
    """
    total, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, Mapping):
            total += 1 + 2 * len(item)
            if total <= limit:
                stack.extend(item.keys())
                stack.extend(item.values())
        elif isinstance(item, list | tuple):
            total += 1 + len(item)
            if total <= limit:
                stack.extend(item)
        elif is_int(item):
            total += 1 + item.bit_length() // 3
        else:
            total += 1
        if total > limit:
            return total
    return total


def charge(amount: int) -> None:
    """Add ``amount`` to the current render's work; refuse past ``MAX_RENDER_WORK``."""
    work = current_work.get()
    if work is None:
        return
    work[0] += amount
    if work[0] > MAX_RENDER_WORK:
        raise SecurityError(
            f"the template does too much work: one render may build, compare and convert "
            f"at most {MAX_RENDER_WORK:,} characters and elements (MAX_RENDER_WORK)"
        )


def within(size: int, what: str) -> None:
    """Refuse ``what`` if ``size`` is over ``MAX_SEQUENCE_LENGTH``; else charge it."""
    if size > MAX_SEQUENCE_LENGTH:
        raise SecurityError(
            f"{what} would be too long: more than {MAX_SEQUENCE_LENGTH:,} characters and "
            "elements (MAX_SEQUENCE_LENGTH)"
        )
    charge(size)


def built(value: Any, what: str) -> Any:
    """``value`` (just built by ``what``) if it is within the size limit; charged to the render."""
    within(len(value) if isinstance(value, str) else size_of(value), what)
    return value
