"""Embedded mode: a Celery worker (threads pool) and beat running inside the web process.

Same tasks, same code path as production; only the transport (memory) and the
process layout differ. Started by ``manage.py serve`` when DATABASE_URL and
REDIS_URL are unset. The bare ``WorkController`` is used because the full
worker installs signal handlers, which only the main thread may do.
"""

from __future__ import annotations

import logging
import threading

from celery import signals
from celery.worker import WorkController

logger = logging.getLogger(__name__)


class EmbeddedWorker(WorkController):
    """A worker that, like the command-line one, announces readiness (starts the heartbeat)."""

    def on_consumer_ready(self, consumer):
        signals.worker_ready.send(sender=consumer)


def start_embedded_worker(concurrency: int = 4) -> EmbeddedWorker:
    """Start the worker and beat in daemon threads; returns the worker."""
    from celery.beat import EmbeddedService

    from controlplane.celery import app

    worker = EmbeddedWorker(
        app=app,
        hostname="embedded@localhost",
        pool_cls="threads",
        concurrency=concurrency,
        without_mingle=True,
        without_gossip=True,
        without_heartbeat=True,
        loglevel=logging.WARNING,
    )

    def run_worker() -> None:
        try:
            worker.start()
        except Exception:
            logger.exception("embedded worker stopped")

    threading.Thread(target=run_worker, name="embedded-celery-worker", daemon=True).start()
    beat = EmbeddedService(app, thread=True, scheduler_cls="celery.beat:Scheduler")
    beat.start()
    return worker
