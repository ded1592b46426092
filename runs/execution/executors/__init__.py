"""Step executors, one per step type. Each takes a StepContext and returns a StepOutcome,
or raises StepFailure / StepWaiting / StepCancelled.

``agents`` (agent, manager, handoff steps and ``invoke``, the one way a step runs an agent),
``flow`` (tool, router, parallel, loop, approval steps), ``routing`` (router agents). May
import Django, ``agents``, ``policies`` and the rest of ``runs`` except the modules that
run executors (``claim``, ``worker``).
"""

from __future__ import annotations

from runs.execution.executors import agents as agent_executors
from runs.execution.executors import flow
from runs.execution.outcomes import StepOutcome
from runs.execution.step_context import StepContext

EXECUTORS = {
    "agent": agent_executors.agent_step,
    "manager": agent_executors.manager_step,
    "handoff": agent_executors.handoff_step,
    "tool": flow.tool_step,
    "router": flow.router_step,
    "parallel": flow.parallel_step,
    "loop": flow.loop_step,
    "approval": flow.approval_step,
}


def execute(ctx: StepContext) -> StepOutcome:
    """Run the executor of the step's type."""
    return EXECUTORS[ctx.step_def.type](ctx)
