"""A step held back by its provider's concurrency limit says so in the run's timeline."""

from __future__ import annotations

import types

from runs.presenters import event_line


def test_a_slot_wait_reads_as_waiting_for_a_provider_slot():
    event = types.SimpleNamespace(
        seq=4,
        type="step.waiting_for_slot",
        step_key="answer",
        created_at=None,
        payload={
            "agent": "writer",
            "provider": "openai-main",
            "reason": "waiting for a provider slot: all 5 are in use",
        },
    )
    line = event_line(event)
    assert line.headline == "Step answer is waiting for a provider slot"
    assert line.tone == "warn"
    assert ("Provider", "openai-main") in line.facts
    assert ("Reason", "waiting for a provider slot: all 5 are in use") in line.facts
