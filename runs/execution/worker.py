"""The task body that runs steps: claim, execute, finish, then the single next step, if any.

Sequence for every step (DESIGN.md section 6):

1. ``claim``: a conditional UPDATE queued -> running with a fresh claim token and a lease;
   exactly one row or nothing (a duplicate delivery does nothing).
2. the executor runs outside any transaction, in a thread bounded by the step timeout,
   while a heartbeat renews the lease;
3. ``finish_*``: one transaction stores the output, events and audit, asks the pure
   scheduler what is next and creates those StepRuns; they are dispatched after commit.
   When exactly one step is next, the same transaction claims it for this worker, which
   runs it at once (fast path: no message, no second read of the step or the run).

A worker that dies loses nothing: the StepRun row says what is queued or running, and
the sweeper re-dispatches queued steps and re-queues running steps whose lease expired.
"""

from __future__ import annotations

import logging

from django.db import close_old_connections

from controlplane.crypto import SecretDecryptionError
from runs.execution.claim import claim, run_executor
from runs.execution.finish import finish_cancelled, finish_failure, finish_success, finish_waiting
from runs.execution.outcomes import StepCancelled, StepFailure, StepWaiting

logger = logging.getLogger(__name__)


def execute_step(step_id: int, worker: str) -> None:
    """Task body: claim, execute, finish; continue with the single next step when there is
    one (claimed by the finish itself)."""
    claimed = claim(step_id, worker)
    while claimed is not None:
        step, token = claimed
        claimed = None
        try:
            outcome = run_executor(step, token)
        except StepCancelled as exc:
            finish_cancelled(step, token, str(exc))
        except StepWaiting as waiting:
            finish_waiting(step, token, waiting)
        except StepFailure as failure:
            finish_failure(step, token, failure)
        except SecretDecryptionError as exc:  # keys rotated without this worker: say so
            finish_failure(step, token, StepFailure(str(exc), code="secrets_unusable"))
        except Exception as exc:  # a bug in an executor must not kill the worker loop
            logger.exception("step %s crashed", step.pk)
            finish_failure(
                step,
                token,
                StepFailure(
                    f"internal error: {type(exc).__name__}: {exc}",
                    code="internal_error",
                    retryable=True,
                ),
            )
        else:
            claimed = finish_success(step, token, outcome, worker)
    # once per task, not per step: the fast path keeps its connection between steps
    close_old_connections()
