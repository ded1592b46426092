"""The single policy decision point, called before every agent invocation, model and tool call.

The engine calls ``decide`` and obeys the answer. Until rules exist (the policies issue),
every call is allowed; the decision is still returned with a reason so the engine records
it in the run's timeline, and the call sites are the ones the rules will govern.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from policies.choices import Effect

ACTIONS = ("invoke_agent", "call_model", "call_tool", "delegate")


@dataclasses.dataclass(frozen=True)
class Decision:
    """What the decision point said: allow, deny or require_approval, and why."""

    effect: str
    reason: str
    rule: str | None = None
    inputs_hash: str = ""

    @property
    def allowed(self) -> bool:
        return self.effect == Effect.ALLOW


@dataclasses.dataclass(frozen=True)
class PolicyRequest:
    """Everything a rule may look at for one call."""

    tenant_id: int
    action: str
    agent: str | None = None
    agent_tags: tuple[str, ...] = ()
    tool: str | None = None
    tool_tags: tuple[str, ...] = ()
    risk: str | None = None
    model: str | None = None
    arguments: Any = None
    run_id: int | None = None
    run_input: Any = None
    spend: dict[str, Any] = dataclasses.field(default_factory=dict)

    def digest(self) -> str:
        data = dataclasses.asdict(self)
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def decide(request: PolicyRequest) -> Decision:
    """The decision for one call. No policies are defined yet, so every call is allowed."""
    if request.action not in ACTIONS:
        raise ValueError(f"unknown policy action {request.action!r}")
    return Decision(
        effect=Effect.ALLOW,
        reason="no policy matched: allowed by default",
        rule=None,
        inputs_hash=request.digest(),
    )
