"""Engine tests run a REAL Celery worker process on a queue of their own."""

from __future__ import annotations

import time
import uuid

import pytest

from controlplane.celery import app
from runs.choices import TERMINAL_RUN_STATUSES
from runs.models import Run
from tests.processes import Worker


@pytest.fixture(scope="session")
def engine_queue():
    queue = f"test-{uuid.uuid4().hex[:8]}"
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    yield queue
    app.conf.task_default_queue = previous


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, engine_queue):
    """One worker (2 processes) for the session, consuming this run's queue."""
    worker = Worker(engine_queue)
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def worker(celery_worker, transactional_db):
    """A running worker; test data is committed so the worker sees it."""
    return celery_worker


def wait_for_run(run: Run, statuses=TERMINAL_RUN_STATUSES, timeout: float = 60) -> Run:
    """Poll until the run reaches one of ``statuses``; the run as the database has it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = Run.objects.unscoped().get(pk=run.pk)
        if current.status in statuses:
            return current
        time.sleep(0.1)
    current = Run.objects.unscoped().get(pk=run.pk)
    raise AssertionError(f"run {run.pk} still {current.status} after {timeout}s")
