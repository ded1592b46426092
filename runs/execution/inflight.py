"""The steps a worker process has in flight: hand-off from the broker, back-pressure, and
the cancel signal that aborts their I/O.

A Celery message is only a wake-up (the StepRun row is the truth): the task hands its step
to this process's runner pool and returns, so one worker process keeps up to
``STEP_MAX_IN_FLIGHT`` steps going, most of them parked on the I/O loop
(``controlplane.aio``) while their model or tool answers. When that many are in flight the
task blocks before handing off, and the worker takes no further message (prefetch 1) until
one finishes: that is the back-pressure. A process that dies with steps in flight loses
nothing: their leases expire and the sweeper re-queues them.

When a run ends (cancelled, timed out, failed elsewhere) ``announce_run_ended`` reaches
every worker process (in-process at once; across processes over Redis pub/sub, with the
lease heartbeat's status check as the fallback) and cancels the ``CancelScope`` of each of
the run's steps there: an in-flight model or HTTP call is closed at once.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Callable

import redis
from django.conf import settings

from controlplane import aio
from controlplane.redis_names import redis_name

logger = logging.getLogger(__name__)


def channel() -> str:
    """The run-ended channel of this installation (pub/sub ignores the Redis db number)."""
    return redis_name("runs", "ended")


class InFlight:
    """This process's runner pool, bounded by ``STEP_MAX_IN_FLIGHT``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._slots: threading.BoundedSemaphore | None = None
        self._count = 0

    def _ready(self) -> tuple[concurrent.futures.ThreadPoolExecutor, threading.BoundedSemaphore]:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                size = settings.STEP_MAX_IN_FLIGHT
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=size, thread_name_prefix="step-runner"
                )
                self._slots = threading.BoundedSemaphore(size)
                self._pid, self._count = os.getpid(), 0
            assert self._slots is not None
            return self._pool, self._slots

    @property
    def count(self) -> int:
        """Steps (chains) this process runs now."""
        return self._count

    def submit(self, body: Callable[[], None]) -> None:
        """Run ``body`` in the pool; block while the process is full (back-pressure)."""
        pool, slots = self._ready()
        slots.acquire()
        with self._lock:
            self._count += 1

        def run() -> None:
            try:
                body()
            except Exception:  # the body finishes its own steps; this is a last resort
                logger.exception("step runner crashed")
            finally:
                with self._lock:
                    self._count -= 1
                slots.release()

        try:
            pool.submit(run)
        except BaseException:
            with self._lock:
                self._count -= 1
            slots.release()
            raise

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every step in flight to finish; whether they did."""
        deadline = time.monotonic() + timeout
        while self._count and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self._count


inflight = InFlight()


class Scopes:
    """The cancel scopes of the steps running in this process, by run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_run: dict[int, set[aio.CancelScope]] = {}
        self._listening_pid: int | None = None

    def add(self, run_id: int, scope: aio.CancelScope) -> None:
        with self._lock:
            self._by_run.setdefault(run_id, set()).add(scope)
        self._listen()

    def remove(self, run_id: int, scope: aio.CancelScope) -> None:
        with self._lock:
            scopes = self._by_run.get(run_id)
            if scopes is not None:
                scopes.discard(scope)
                if not scopes:
                    del self._by_run[run_id]

    def run_ids(self) -> list[int]:
        with self._lock:
            return list(self._by_run)

    def cancel_run(self, run_id: int, reason: str) -> int:
        """Cancel every step of the run in this process; how many."""
        with self._lock:
            scopes = list(self._by_run.get(run_id, ()))
        for scope in scopes:
            scope.cancel(reason)
        return len(scopes)

    def _listen(self) -> None:
        if not settings.REDIS_URL or self._listening_pid == os.getpid():
            return
        with self._lock:
            if self._listening_pid == os.getpid():
                return
            self._listening_pid = os.getpid()
        threading.Thread(target=self._subscribe, name="run-ended-listener", daemon=True).start()

    def _subscribe(self) -> None:
        backoff = 0.5
        while True:
            try:
                client = redis.Redis.from_url(settings.REDIS_URL, socket_keepalive=True)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(channel())
                backoff = 0.5
                for message in pubsub.listen():
                    run_id, _, status = message["data"].decode().partition(":")
                    self.cancel_run(int(run_id), f"the run is {status}")
            except Exception:  # Redis away: the heartbeat's status check covers the gap
                logger.warning("run-ended listener lost Redis; retrying", exc_info=True)
                time.sleep(backoff)
                backoff = min(backoff * 2, 10.0)


scopes = Scopes()


def announce_run_ended(run_id: int, status: str) -> None:
    """Tell every worker process that the run ended: their steps of it stop now."""
    scopes.cancel_run(run_id, f"the run is {status}")
    if not settings.REDIS_URL:
        return
    try:
        _publisher().publish(channel(), f"{run_id}:{status}")
    except Exception:  # the heartbeat's status check stops the steps within a beat
        logger.warning("could not announce that run %s ended", run_id, exc_info=True)


_publisher_lock = threading.Lock()
_publisher_client: tuple[int, object] | None = None


def _publisher():
    global _publisher_client
    with _publisher_lock:
        if _publisher_client is None or _publisher_client[0] != os.getpid():
            _publisher_client = (
                os.getpid(),
                redis.Redis.from_url(
                    settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
                ),
            )
        return _publisher_client[1]
