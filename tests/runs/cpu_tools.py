"""A CPU-bound built-in tool for engine tests; a worker loads it with ``--include``.

``spin`` burns CPU in pure Python and never checks for cancellation, like an executor stuck
in a parser or a loop on tenant input: only the runner's timeout can end it. It writes
"started" to the file ``marker`` and, when stopped, "stopped" (its ``finally`` runs only if
the worker really interrupted it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery.signals import worker_init

from agents.choices import Risk
from agents.tools.builtin import BUILTINS
from agents.tools.builtin.spec import BuiltinSpec


def spin(arguments: dict[str, Any], ctx: Any) -> dict[str, Any]:
    marker = Path(arguments["marker"])
    marker.write_text("started")
    turns = 0
    try:
        while True:
            turns += 1
    finally:
        marker.write_text("stopped")


SPIN = BuiltinSpec(
    name="spin",
    description="Burn CPU until stopped (tests only).",
    input_schema={
        "type": "object",
        "properties": {"marker": {"type": "string"}},
        "required": ["marker"],
    },
    output_schema={"type": "object"},
    risk=Risk.READ,
    fn=spin,
)


@worker_init.connect
def register(**kwargs: Any) -> None:
    """Only in the worker (the test process registers it for one test with monkeypatch)."""
    BUILTINS["spin"] = SPIN
