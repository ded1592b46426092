"""The Celery application. Tasks are thin: they load by id and call a service."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_ready, worker_shutdown
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

app = Celery("controlplane")
app.config_from_object("django.conf:settings", namespace="CELERY")
# A task hands its step to threads sharing the process's database pool (runs.execution.
# inflight) and returns at once; Celery's Django fix-up would close that pool after every
# task under the steps still using it. The child process still drops what it inherited at
# fork; threads give their connections back themselves (controlplane.aio.release_db).
app.conf.CELERY_DB_REUSE_MAX = 2**62


@task_prerun.connect
@task_postrun.connect
def fresh_connections(**kwargs) -> None:
    """What the fix-up did for a task's thread, without closing the pool: a connection
    broken by a database outage is dropped, a usable one goes back to the pool (CONN_MAX_AGE
    is 0 with a pool). Without it the sweep task kept a dead connection after an outage and
    never reclaimed a lease again."""
    close_old_connections()


app.autodiscover_tasks()

logger = logging.getLogger(__name__)
_stop_heartbeat = threading.Event()


def _heartbeat_loop(hostname: str, interval: int) -> None:
    from django.core.cache import cache

    from controlplane.health import WORKER_HEARTBEAT_KEY

    while not _stop_heartbeat.is_set():
        try:
            cache.set(
                WORKER_HEARTBEAT_KEY,
                {"at": time.time(), "hostname": hostname},
                timeout=interval * 6,
            )
        except Exception as exc:  # Redis briefly down: try again next beat
            logger.warning("worker heartbeat not written: %s", exc)
        _stop_heartbeat.wait(interval)


@worker_ready.connect
def start_heartbeat(sender=None, **kwargs) -> None:
    """Every worker reports it is alive; /readyz reads the last report."""
    from django.conf import settings

    _stop_heartbeat.clear()
    hostname = getattr(sender, "hostname", None) or socket.gethostname()
    threading.Thread(
        target=_heartbeat_loop,
        args=(hostname, settings.WORKER_HEARTBEAT_SECONDS),
        name="worker-heartbeat",
        daemon=True,
    ).start()


@worker_shutdown.connect
def stop_heartbeat(**kwargs) -> None:
    _stop_heartbeat.set()
