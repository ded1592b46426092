"""A step whose provider key the worker cannot decrypt (keys rotated without giving the
worker the new list) fails with a message saying what to do, not an internal error that is
retried (issue 12, item 14). Real PostgreSQL, Redis and Celery worker."""

from __future__ import annotations

from cryptography.fernet import Fernet

from tests.agents.registry_factories import make_agent, make_provider
from tests.runs.conftest import wait_for_run
from tests.runs.test_engine import _start, _steps, _workflow


def test_a_step_fails_with_what_to_do(world, worker, settings):
    # stored under a key the worker (another process, started with the test keys) lacks:
    # keys were rotated without giving the worker the new list
    settings.SECRETS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    provider = make_provider(
        world.acme,
        slug="oa",
        kind="openai",
        api_key="sk-rotate-me",
        base_url="https://api.openai.com/v1",
        models=[{"name": "gpt-4o-mini"}],
    )
    make_agent(
        world.acme,
        slug="writer",
        provider=provider,
        config={"provider": "oa", "model": "gpt-4o-mini", "system_prompt": "Write."},
    )
    workflow = _workflow(world, "write", [{"id": "write", "type": "agent", "agent": "writer"}])

    run = wait_for_run(_start(world, workflow))
    assert run.status == "failed"
    step = _steps(run)["write"]
    assert step.error["code"] == "secrets_unusable", step.error
    assert "SECRETS_ENCRYPTION_KEYS" in step.error["message"]
    assert step.attempt == 1  # not retried: an operator has to act
