"""How a step ends, as its executor tells it: an outcome, a failure, a cancellation, or
a wait for a person; ``StepAbandoned`` stops an executor thread past its timeout.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from controlplane import aio
from controlplane.errors import CodedError


class StepFailure(CodedError):
    """The step failed; ``retryable`` says whether its retry policy may try again."""


class StepCancelled(aio.Cancelled):
    """The run was cancelled while the step ran; its result is discarded."""


class StepWaiting(Exception):
    """The step now waits for a person (an ApprovalRequest was created)."""

    def __init__(self, approval: Any) -> None:
        super().__init__(approval.title)
        self.approval = approval
        # tokens and cost already spent by the attempt that now waits (kept on the step)
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd = 0.0


@dataclasses.dataclass
class StepOutcome:
    """What an executor produced for a step."""

    output: Any = None
    route: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    context_updates: dict[str, Any] = dataclasses.field(default_factory=dict)
    state: dict[str, Any] | None = None


class StepAbandoned(BaseException):
    """Raised inside an executor thread still running past its step's timeout, to stop it.

    A BaseException, so an executor's ``except Exception`` cannot swallow it; the executor
    pool's work item catches it and the thread goes back to the pool.
    """
