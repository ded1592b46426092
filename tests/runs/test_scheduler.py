"""The pure scheduler, with no database: microseconds per test."""

from runs.engine.definition import parse_definition
from runs.engine.scheduler import (
    FAILED,
    QUEUED,
    SKIPPED,
    SUCCEEDED,
    CompleteRun,
    FailRun,
    SkipStep,
    StartStep,
    StepState,
    plan,
)


def _defn(*steps):
    return parse_definition({"steps": list(steps)})


def test_pipeline_starts_the_first_step_then_each_next():
    d = _defn(
        {"id": "a", "type": "agent"}, {"id": "b", "type": "agent"}, {"id": "c", "type": "agent"}
    )
    assert plan(d, {}) == [StartStep("a")]
    states = {"a": StepState(SUCCEEDED)}
    assert plan(d, states, ["a"]) == [StartStep("b")]
    states |= {"b": StepState(SUCCEEDED), "c": StepState(SUCCEEDED)}
    assert plan(d, states, ["c"]) == [CompleteRun()]


def test_fan_out_and_join():
    d = _defn(
        {"id": "a", "type": "agent"},
        {"id": "b", "type": "agent", "needs": ["a"]},
        {"id": "c", "type": "agent", "needs": ["a"]},
        {"id": "join", "type": "agent", "needs": ["b", "c"]},
    )
    assert plan(d, {"a": StepState(SUCCEEDED)}, ["a"]) == [StartStep("b"), StartStep("c")]
    partial = {"a": StepState(SUCCEEDED), "b": StepState(SUCCEEDED), "c": StepState(QUEUED)}
    assert plan(d, partial, ["b"]) == []
    partial["c"] = StepState(SUCCEEDED)
    assert plan(d, partial, ["c"]) == [StartStep("join")]


def test_router_skips_the_branch_not_chosen_and_joins_after():
    d = _defn(
        {
            "id": "triage",
            "type": "router",
            "routes": {"billing": ["billing"], "technical": ["tech"]},
        },
        {"id": "billing", "type": "agent", "needs": ["triage"]},
        {"id": "tech", "type": "agent", "needs": ["triage"]},
        {"id": "after_tech", "type": "agent", "needs": ["tech"]},
        {"id": "summary", "type": "agent", "needs": ["billing", "after_tech"]},
    )
    states = {"triage": StepState(SUCCEEDED, route="billing")}
    actions = plan(d, states, ["triage"])
    assert actions == [
        StartStep("billing"),
        SkipStep("tech", "router triage chose 'billing'"),
        SkipStep("after_tech", "every step it needs was skipped"),
    ]
    states |= {
        "billing": StepState(SUCCEEDED),
        "tech": StepState(SKIPPED),
        "after_tech": StepState(SKIPPED),
    }
    assert plan(d, states, ["billing"]) == [StartStep("summary")]
    states["summary"] = StepState(SUCCEEDED)
    assert plan(d, states, ["summary"]) == [CompleteRun()]


def test_failure_fails_the_run_unless_tolerated():
    d = _defn({"id": "a", "type": "agent"}, {"id": "b", "type": "agent"})
    assert plan(d, {"a": StepState(FAILED)}, ["a"]) == [FailRun("a", "step a failed")]
    assert plan(d, {"a": StepState(FAILED, tolerated=True)}, ["a"]) == [StartStep("b")]


def test_full_scan_resumes_from_recorded_states():
    d = _defn(
        {"id": "a", "type": "agent"}, {"id": "b", "type": "agent"}, {"id": "c", "type": "agent"}
    )
    assert plan(d, {"a": StepState(SUCCEEDED)}) == [StartStep("b")]
    assert plan(d, {"a": StepState(SUCCEEDED), "b": StepState(QUEUED)}) == []


def test_roots_and_explicit_needs():
    d = _defn(
        {"id": "a", "type": "agent", "needs": []},
        {"id": "b", "type": "agent", "needs": []},
        {"id": "c", "type": "agent", "needs": ["a", "b"]},
    )
    assert plan(d, {}) == [StartStep("a"), StartStep("b")]
