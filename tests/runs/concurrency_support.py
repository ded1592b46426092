"""What the engine-concurrency tests share: single-llm-agent runs against the scripted
OpenAI-compatible server (tests/fakes/openai_server.py), workers of a test's own on a queue
of its own, and a sampler of the test database's connections in pg_stat_activity."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
from django.db import connection

from agents.providers import slots
from controlplane import context
from controlplane.celery import app as celery_app
from runs import workflow_services
from runs.models import RunEvent
from tests.agents.registry_factories import make_agent, make_provider
from tests.fakes.openai_server import FakeOpenAI
from tests.processes import Worker

MODEL = "fake-1"
AGENT = "answerer"


class HeldFakeOpenAI(FakeOpenAI):
    """The scripted server, holding every answer until ``hold_until`` requests are in flight
    at once (or ``hold_max`` seconds after the first arrived), then answering after the
    usual ``latency``: proof that that many were in flight together, whatever the speed of
    the machine. ``opened_by`` says what opened the gate ("count" or "timer")."""

    def __init__(self, *, hold_until: int, hold_max: float = 40.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hold_until = hold_until
        self.hold_max = hold_max
        self.opened_by: str | None = None
        self._gate: asyncio.Event | None = None

    def _open(self, by: str) -> None:
        if self._gate is not None and not self._gate.is_set():
            self.opened_by = by
            self._gate.set()

    async def _wait(self, reader: asyncio.StreamReader, delay: float) -> str:
        if self._gate is None:
            self._gate = asyncio.Event()
            asyncio.get_running_loop().call_later(self.hold_max, self._open, "timer")
        if self.stats()["current"] >= self.hold_until:
            self._open("count")
        await self._gate.wait()
        return await FakeOpenAI._wait(reader, delay)


def llm_agent(world, fake: FakeOpenAI, *, max_concurrency: int):
    """An OpenAI-compatible provider at ``fake`` allowing ``max_concurrency`` requests at
    once, and the llm agent ``AGENT`` on it; the provider."""
    with context.tenant_context(world.acme):
        provider = make_provider(
            world.acme,
            slug="fake-openai",
            kind="openai",
            base_url=fake.base_url(),
            api_key="test-key",
            models=[{"name": MODEL, "input_per_mtok": 1, "output_per_mtok": 2}],
            max_concurrency=max_concurrency,
        )
        make_agent(
            world.acme,
            slug=AGENT,
            provider=provider,
            config={
                "provider": provider.slug,
                "model": MODEL,
                "system_prompt": "Answer in one word.",
                "max_tokens": 16,
            },
        )
    return provider


def llm_workflow(world, fake: FakeOpenAI, *, max_concurrency: int, slug: str = "one-llm"):
    """``llm_agent`` and a workflow of that one agent step; the provider and workflow."""
    provider = llm_agent(world, fake, max_concurrency=max_concurrency)
    with context.system_context("tests", tenant=world.acme):
        workflow = workflow_services.workflow_create(
            tenant=world.acme,
            slug=slug,
            name=slug,
            definition={
                "input_schema": {"type": "object"},
                "example_input": {},
                "steps": [{"id": "ask", "type": "agent", "agent": AGENT, "input": "hi"}],
            },
        )
    return provider, workflow


def event_types(run_ids: list[int]) -> Counter:
    return Counter(
        RunEvent.objects.unscoped().filter(run_id__in=run_ids).values_list("type", flat=True)
    )


@contextlib.contextmanager
def own_queue() -> Iterator[str]:
    """Point this process's Celery app at a fresh queue (runs started here go there), so
    only the workers a test starts on it run its steps (not the session's worker)."""
    queue = f"conc-{uuid.uuid4().hex[:8]}"
    previous = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    try:
        yield queue
    finally:
        celery_app.conf.task_default_queue = previous
        # leftovers of a failed test: not worth a failure
        with contextlib.suppress(Exception), celery_app.connection_for_write() as conn:
            conn.default_channel.client.delete(queue)


class Fleet:
    """Workers of one test, on its own queue; SIGKILLed at the end (nothing they hold
    matters then, and a warm shutdown would wait for their steps)."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.workers: list[Worker] = []

    def start(self, concurrency: int = 1, wait: bool = True, **env: str) -> Worker:
        worker = Worker(
            self.queue,
            concurrency=concurrency,
            extra_env={"EGRESS_ALLOWED_NETWORKS": "127.0.0.0/8", **env},
        )
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def close(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(Exception):
                worker.kill()
                worker.stop()


def forget_slots(provider) -> None:
    """Drop the provider's slot leases left by killed workers (Redis outlives the test)."""
    with contextlib.suppress(Exception):
        slots.reset(provider.pk)


# pg_stat_activity ---------------------------------------------------------------------------


def worker_pids(worker: Worker) -> list[int]:
    """The worker's main process and its pool processes."""
    main = worker.process.pid
    try:
        with open(f"/proc/{main}/task/{main}/children") as children:
            return [main, *(int(p) for p in children.read().split())]
    except OSError:
        return [main]


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def _local_ports_by_inode(server_port: int) -> dict[str, int]:
    """The local port of every TCP socket connected to ``server_port``, by inode."""
    ports = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in lines.readlines()[1:]:
                cols = line.split()
                if int(cols[2].rsplit(":", 1)[1], 16) == server_port:
                    ports[cols[9]] = int(cols[1].rsplit(":", 1)[1], 16)
    return ports


class PgSampler(threading.Thread):
    """Every ``interval`` s: the backends of the test database in pg_stat_activity whose
    client socket belongs to one of the watched processes, counted per process (the socket's
    local port, found in /proc, names its owner). ``peak[pid]`` is the most seen at once,
    ``peak_total`` across all of them. Its own connection is not counted (no watched pid)."""

    def __init__(self, pids: list[int], interval: float = 0.05) -> None:
        super().__init__(daemon=True, name="pg-sampler")
        self.pids = pids
        self.interval = interval
        self.peak: Counter = Counter()
        self.peak_total = 0
        self.samples = 0
        self.unowned_peak = 0  # backends of the test database owned by nobody we watch
        self.error: BaseException | None = None
        self.halt = threading.Event()
        db = connection.settings_dict
        self._conninfo = {
            "dbname": db["NAME"],
            "user": db.get("USER") or None,
            "password": db.get("PASSWORD") or None,
            "host": db.get("HOST") or "127.0.0.1",
            "port": db.get("PORT") or None,
        }

    def run(self) -> None:
        try:
            params = {k: v for k, v in self._conninfo.items() if v}
            with psycopg.connect(**params, autocommit=True, application_name="pg-sampler") as pg:
                while not self.halt.is_set():
                    self._sample(pg)
                    self.halt.wait(self.interval)
        except BaseException as exc:  # reported by the test, which then fails
            self.error = exc

    def _sample(self, pg: Any) -> None:
        rows = pg.execute(
            "SELECT client_port FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid() AND client_port IS NOT NULL",
            (self._conninfo["dbname"],),
        ).fetchall()
        backend_ports = {port for (port,) in rows}
        by_inode = _local_ports_by_inode(int(self._conninfo["port"] or 5432))
        counts: Counter = Counter()
        owned = set()
        for pid in self.pids:
            ports = {by_inode[i] for i in _socket_inodes(pid) if i in by_inode}
            mine = ports & backend_ports
            counts[pid] = len(mine)
            owned |= mine
        for pid, count in counts.items():
            self.peak[pid] = max(self.peak[pid], count)
        self.peak_total = max(self.peak_total, sum(counts.values()))
        self.unowned_peak = max(self.unowned_peak, len(backend_ports - owned))
        self.samples += 1

    def stop(self) -> None:
        self.halt.set()
        self.join(10)
