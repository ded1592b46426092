"""What the dashboard shows of workflows and runs: the step graph in layers, the steps of a
run with their progress, and each run event as a line of the timeline.

Pure functions over definitions, rows and payloads (no queries), so the pages and the
htmx fragments render the same thing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from controlplane.dashboard.display import pretty_json as pretty  # JSON as text decoded
from runs.choices import RunStatus
from runs.engine.validation.graph import topological_order
from runs.selectors import FINISHED_STEP_STATUSES

ACTIVE_RUN_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING)


NONE = "\u2013"  # an en dash: no value


def usd(value: Any) -> str:
    """A cost in US dollars: two decimals at least, six at most (model calls are cheap)."""
    if value in (None, ""):
        return NONE
    amount = Decimal(str(value))
    text = f"{amount:.6f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"


def milliseconds(value: Any) -> str:
    if value in (None, ""):
        return NONE
    ms = float(value)
    return f"{ms / 1000:.2f} s" if ms >= 1000 else f"{ms:.0f} ms"


def duration(start: Any, end: Any) -> str:
    if start is None or end is None:
        return NONE
    return milliseconds((end - start).total_seconds() * 1000)


# the step graph ----------------------------------------------------------------------------


@dataclasses.dataclass
class GraphStep:
    id: str
    type: str
    name: str
    needs: list[str]
    does: str  # what it calls: "agent billing-support", "tool ticket-create", ...
    routes: list[tuple[str, list[str]]]  # a router's route -> the steps it enables
    gated_by: list[str]  # routers whose route enables this step


@dataclasses.dataclass
class Graph:
    layers: list[list[GraphStep]]
    ordered: bool  # False: the needs could not be ordered (shown in written order)


def _does(step: Mapping[str, Any]) -> str:
    kind = step.get("type")
    if kind == "tool":
        return f"tool {step.get('tool', '?')}"
    if kind == "parallel":
        branches = step.get("branches") or []
        merge = step.get("merge")
        merged = f", merged by agent {merge['agent']}" if isinstance(merge, dict) else ""
        if branches:
            names = ", ".join(str(b.get("name")) for b in branches if isinstance(b, Mapping))
            return f"{len(branches)} branches ({names}){merged}"
        return f"for each item: agent {step.get('agent', '?')}{merged}"
    if kind == "manager":
        delegates = ", ".join(step.get("delegates") or [])
        return f"agent {step.get('agent', '?')} delegating to {delegates}"
    if kind == "handoff":
        return f"agents {', '.join(step.get('agents') or [])}, starting with {step.get('start')}"
    if kind == "approval":
        return f"a person ({step.get('approvers', 'admin')} or above) approves"
    if kind == "router" and not step.get("agent"):
        return "inline rules"
    if kind == "loop":
        return f"agent {step.get('agent', '?')}, at most {step.get('max_iterations', '?')} passes"
    return f"agent {step.get('agent', '?')}"


def step_graph(definition: Mapping[str, Any]) -> Graph:
    """Steps laid out in layers: a step sits one layer below the deepest step it needs."""
    raw = [s for s in definition.get("steps") or [] if isinstance(s, Mapping) and "id" in s]
    by_id = {s["id"]: s for s in raw}
    needs = {
        s["id"]: list(s["needs"]) if "needs" in s else ([raw[i - 1]["id"]] if i else [])
        for i, s in enumerate(raw)
    }
    gated: dict[str, list[str]] = {}
    for step in raw:
        for targets in (step.get("routes") or {}).values():
            for target in targets:
                gated.setdefault(target, []).append(step["id"])
    try:
        order = topological_order(definition)
        ordered = True
    except (ValueError, KeyError, TypeError):
        order, ordered = [s["id"] for s in raw], False
    depth: dict[str, int] = {}
    for step_id in order:
        depth[step_id] = (
            1 + max((depth.get(n, 0) for n in needs[step_id]), default=-1) if ordered else 0
        )
    layers: list[list[GraphStep]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for step_id in order:
        step = by_id[step_id]
        layers[depth[step_id]].append(
            GraphStep(
                id=step_id,
                type=str(step.get("type", "")),
                name=str(step.get("name", "")),
                needs=needs[step_id],
                does=_does(step),
                routes=[(route, list(t)) for route, t in (step.get("routes") or {}).items()],
                gated_by=gated.get(step_id, []),
            )
        )
    return Graph(layers=layers, ordered=ordered)


# the steps of a run ------------------------------------------------------------------------


@dataclasses.dataclass
class StepRow:
    key: str
    type: str
    step: Any  # the StepRun, or None when the step has not been planned yet

    @property
    def status(self) -> str:
        return self.step.status if self.step is not None else "not_started"


def step_rows(definition: Mapping[str, Any], steps: Iterable[Any]) -> list[StepRow]:
    """Every step of the definition in graph order, with its StepRun where there is one."""
    found = {s.step_key: s for s in steps}
    graph = step_graph(definition)
    rows = [StepRow(g.id, g.type, found.pop(g.id, None)) for layer in graph.layers for g in layer]
    rows += [StepRow(key, s.step_type, s) for key, s in found.items()]  # not in the definition
    return rows


@dataclasses.dataclass
class Progress:
    finished: int
    total: int

    @property
    def percent(self) -> int:
        return round(100 * self.finished / self.total) if self.total else 0


def progress_of(definition: Mapping[str, Any], steps: Iterable[Any]) -> Progress:
    """Finished steps (succeeded, skipped or failed) of the definition's steps, as the API says."""
    finished = sum(1 for s in steps if s.status in FINISHED_STEP_STATUSES)
    return Progress(finished=finished, total=len(definition.get("steps") or []))


# the timeline ------------------------------------------------------------------------------


@dataclasses.dataclass
class EventLine:
    """One timeline entry: a headline, facts (label, value) and JSON blocks to unfold."""

    seq: int
    type: str
    step: str
    created_at: Any
    kind: str  # the CSS class: model, tool, policy, approval, step, run, other
    headline: str
    tone: str = ""  # ok, failed, warn or "" (shown with an icon and words, never colour alone)
    facts: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    blocks: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    approval: int | None = None
    simulated: bool = False


def _tokens(payload: Mapping[str, Any]) -> str:
    return f"{payload.get('input_tokens', 0)} in / {payload.get('output_tokens', 0)} out"


def _model_call(line: EventLine, p: Mapping[str, Any]) -> None:
    line.kind = "model"
    line.headline = f"Model call by {p.get('agent', '?')}: {p.get('model', '?')}"
    line.simulated = bool(p.get("simulated"))
    line.facts += [
        ("Provider", str(p.get("provider", NONE))),
        ("Tokens", _tokens(p)),
        ("Cost", usd(p.get("cost_usd"))),
        ("Latency", milliseconds(p.get("latency_ms"))),
    ]
    if p.get("stop_reason"):
        line.facts.append(("Stop reason", str(p["stop_reason"])))
    if p.get("tool_calls"):
        line.facts.append(("Asked for tools", ", ".join(map(str, p["tool_calls"]))))
    if p.get("content"):
        line.blocks.append(("Answer", str(p["content"])))


def _tool_call(line: EventLine, p: Mapping[str, Any]) -> None:
    line.kind = "tool"
    failed = "error" in p
    who = f" by {p['agent']}" if p.get("agent") else ""
    line.headline = f"Tool call{who}: {p.get('tool', '?')}" + (" failed" if failed else "")
    line.tone = "failed" if failed else "ok"
    line.facts.append(("Latency", milliseconds(p.get("latency_ms"))))
    for label, key in (("Risk", "risk"), ("Policy", "policy"), ("Idempotency key", "key")):
        value = p.get("idempotency_key" if key == "key" else key)
        if value:
            line.facts.append((label, str(value)))
    line.blocks.append(("Arguments", pretty(p.get("arguments", {}))))
    if failed:
        error = p["error"]
        line.blocks.append(("Error", error if isinstance(error, str) else pretty(error)))
    else:
        line.blocks.append(("Result", pretty(p.get("result"))))


EFFECT_TONES = {"allow": "ok", "deny": "failed", "require_approval": "warn"}


def _policy(line: EventLine, p: Mapping[str, Any]) -> None:
    line.kind = "policy"
    effect = str(p.get("effect", "?"))
    subject = p.get("tool") or p.get("model") or p.get("agent") or "?"
    line.headline = f"Policy decision: {effect.replace('_', ' ')} {p.get('action', '?')} {subject}"
    line.tone = EFFECT_TONES.get(effect, "")
    line.facts += [("Effect", effect), ("Why", str(p.get("reason") or NONE))]
    if p.get("rule"):
        line.facts.append(("Rule", str(p["rule"])))
    if p.get("would_effect") and p.get("would_effect") != effect:
        where = " ".join(str(p[k]) for k in ("would_policy", "would_rule") if p.get(k))
        line.facts.append(
            (
                "Log only",
                f"would {p['would_effect'].replace('_', ' ')}" + (f" ({where})" if where else ""),
            )
        )


STEP_HEADLINES = {
    "step.queued": ("Step {step} queued", ""),
    "step.started": ("Step {step} started", ""),
    "step.succeeded": ("Step {step} succeeded", "ok"),
    "step.failed": ("Step {step} failed", "failed"),
    "step.skipped": ("Step {step} skipped", ""),
    "step.retrying": ("Step {step} will be retried", "warn"),
    "step.cancelled": ("Step {step} cancelled", "failed"),
    "step.fallback": ("Step {step} falls back to another agent", "warn"),
    "step.escalated": ("Step {step} escalated to a person", "warn"),
    "step.reclaimed": ("Step {step} reclaimed from a lost worker", "warn"),
    "step.waiting": ("Step {step} waits for a person", "warn"),
    "step.waiting_for_slot": ("Step {step} is waiting for a provider slot", "warn"),
}
STEP_FACTS = (
    ("provider", "Provider"),
    ("code", "Code"),
    ("attempt", "Attempt"),
    ("max_attempts", "Of at most"),
    ("delay_s", "Retry in (s)"),
    ("route", "Route"),
    ("fallback_agent", "Fallback agent"),
    ("tolerated", "Tolerated"),
    ("reason", "Reason"),
)
RUN_HEADLINES = {
    "run.created": ("Run created", ""),
    "run.started": ("Run started", ""),
    "run.waiting": ("Run waits for a person", "warn"),
    "run.resumed": ("Run resumed", ""),
    "run.succeeded": ("Run succeeded", "ok"),
    "run.failed": ("Run failed", "failed"),
    "run.cancelled": ("Run cancelled", "failed"),
    "run.timed_out": ("Run timed out", "failed"),
}


def _step_event(line: EventLine, p: Mapping[str, Any]) -> None:
    line.kind = "approval" if line.type == "step.waiting" else "step"
    template, line.tone = STEP_HEADLINES[line.type]
    line.headline = template.format(step=line.step or "?")
    line.approval = p.get("approval")
    if line.type == "step.waiting":
        line.facts.append(("Asks", str(p.get("title", ""))))
        return
    if p.get("message"):
        line.facts.append(("Error", str(p["message"])))
    for key, label in STEP_FACTS:
        if p.get(key) not in (None, "", False):
            line.facts.append((label, str(p[key])))
    if p.get("decided"):
        line.facts.append(("Decided", "by a person"))
    if p.get("duration_ms") is not None:
        line.facts.append(("Took", milliseconds(p["duration_ms"])))
    if p.get("output") is not None:
        line.blocks.append(("Output", pretty(p["output"])))
    if p.get("details"):
        line.blocks.append(("Error details", pretty(p["details"])))


def _run_event(line: EventLine, p: Mapping[str, Any]) -> None:
    line.kind = "run"
    line.headline, line.tone = RUN_HEADLINES[line.type]
    if p.get("reason"):
        line.facts.append(("Reason", str(p["reason"])))
    for key, label in (("workflow", "Workflow"), ("version", "Version"), ("rerun_of", "Rerun of")):
        if p.get(key) is not None:
            line.facts.append((label, str(p[key])))
    if p.get("steps"):
        line.facts.append(("Steps", ", ".join(map(str, p["steps"]))))
    if p.get("output") is not None:
        line.blocks.append(("Output", pretty(p["output"])))


def _other(line: EventLine, p: Mapping[str, Any]) -> None:
    line.kind = "model" if line.type.startswith("model.") else "other"
    if line.type == "router.decision":
        line.headline = f"Route chosen: {p.get('route')}"
        line.facts.append(("Enables", ", ".join(p.get("enables") or []) or "nothing"))
        return
    if line.type == "model.error":
        line.tone = "failed"
        line.headline = f"Model call by {p.get('agent', '?')} failed: {p.get('model', '?')}"
        line.facts += [
            ("Error", str(p.get("error"))),
            ("Latency", milliseconds(p.get("latency_ms"))),
        ]
        return
    line.headline = line.type.replace(".", " ").replace("_", " ").capitalize()
    if p:
        line.blocks.append(("Details", pretty(p)))


def event_line(event: Any) -> EventLine:
    """The timeline entry of a RunEvent."""
    payload = event.payload if isinstance(event.payload, Mapping) else {"value": event.payload}
    line = EventLine(
        seq=event.seq,
        type=event.type,
        step=event.step_key,
        created_at=event.created_at,
        kind="other",
        headline="",
    )
    if event.type == "model.call":
        _model_call(line, payload)
    elif event.type == "tool.call":
        _tool_call(line, payload)
    elif event.type == "policy.decision":
        _policy(line, payload)
    elif event.type in STEP_HEADLINES:
        _step_event(line, payload)
    elif event.type in RUN_HEADLINES:
        _run_event(line, payload)
    else:
        _other(line, payload)
    return line
