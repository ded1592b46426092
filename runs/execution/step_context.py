"""An executor's view of its claimed step (``StepContext``); the run's parsed definition."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from django.conf import settings

from runs.engine.definition import Definition, StepDef, parse_definition
from runs.models import Run, StepRun


@dataclasses.dataclass
class StepContext:
    """Everything an executor may use; created per claimed step."""

    run: Run
    step: StepRun
    step_def: StepDef
    definition: Definition
    run_context: dict[str, Any]
    deadline: float | None
    emit: Callable[..., None]  # (type, payload, also=None): see runs.events.emit
    check_cancel: Callable[[], None]
    next_call_index: Callable[[], int]
    save_state: Callable[[dict[str, Any]], None]
    make_policy: Callable[[StepContext], Any] | None = None  # policy_guard.StepPolicy
    _policy: Any = None

    def policy(self) -> Any:
        """The step's policy enforcement (``make_policy(self)``), made once, on first use."""
        if self._policy is None:
            self._policy = self.make_policy(self)
        return self._policy


def lease_seconds() -> int:
    return settings.STEP_LEASE_SECONDS


@lru_cache(maxsize=512)
def _parsed(run_id: int, definition_json: str) -> Definition:
    return parse_definition(json.loads(definition_json))


def definition_of(run: Run) -> Definition:
    return _parsed(run.pk, json.dumps(run.definition, sort_keys=True))
