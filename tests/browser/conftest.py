"""Browser tests: the real ASGI server (``manage.py serve``) in a subprocess, driven by Chromium.

The server runs against the pytest test database, so test data must be
committed: every browser test uses ``transactional_db`` (through ``live_url``).
The server is started once per session and each test gets a fresh Chromium.

The server dispatches run steps to a Celery queue of this session's own
(``engine_queue``); a test that needs runs to execute starts a real worker process
consuming that queue against the test database (``start_celery_worker``).

Playwright's sync API keeps an asyncio loop running in the test's thread, where
Django refuses ORM calls; ``orm(fn)`` runs a database check in a worker thread.
"""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connection, connections
from playwright.sync_api import sync_playwright

from controlplane.celery import app as celery_app
from tests.processes import Worker, free_port, test_database_url

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts"
SERVER_START_SECONDS = 60


class FewIterationsPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """PBKDF2-SHA256 with few rounds: the server's own hasher verifies it (rounds are stored)."""

    iterations = 1000


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Overrides the suite's MD5 hasher: the server process only knows its default hashers.
    settings.PASSWORD_HASHERS = [f"{__name__}.FewIterationsPBKDF2PasswordHasher"]


@pytest.fixture(scope="session")
def engine_queue():
    """The Celery queue of this session: the server (and this process) dispatch steps to it."""
    queue = f"test-browser-{uuid.uuid4().hex[:8]}"
    previous = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    yield queue
    celery_app.conf.task_default_queue = previous
    with celery_app.connection_for_write() as conn:  # steps nobody ran must not linger
        conn.default_channel.queue_purge(queue)


@pytest.fixture
def start_celery_worker(engine_queue):
    """``start()``: a real worker process on the session's queue, against the test database.

    Started when the test says so (steps dispatched before wait in the queue), and stopped
    after the test.
    """
    started: list[Worker] = []

    def start() -> Worker:
        worker = Worker(engine_queue)
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def asgi_server(django_db_setup, django_db_blocker, engine_queue):
    """``manage.py serve`` on a free port against the test database; its base URL."""
    assert connection.vendor == "postgresql", "browser tests need the PostgreSQL test database"
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "DEBUG": "false",
        "PYTHONUNBUFFERED": "1",
        "CELERY_QUEUE": engine_queue,
    }
    env.pop("TEST_DATABASE_NAME", None)
    log_path = ARTIFACTS / f"server-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-worker",
        ],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server did not answer /healthz:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


@pytest.fixture
def live_url(transactional_db, world, asgi_server) -> str:
    """The server's base URL, with ``world`` committed so the server sees it."""
    return asgi_server


@pytest.fixture
def page(live_url, request):
    """A fresh Chromium page (1280x800); the test's data is set up before it starts."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(15_000)
        page = context.new_page()
        try:
            yield page
        finally:
            context.close()
            browser.close()


def shot(page, request, step: str) -> Path:
    """Save a full-page screenshot under test-artifacts/ and check it was written."""
    ARTIFACTS.mkdir(exist_ok=True)
    name = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")
    path = ARTIFACTS / f"{name}--{step}.png"
    path.unlink(missing_ok=True)
    page.screenshot(path=str(path), full_page=True)
    assert path.is_file(), path
    assert path.stat().st_size > 0, path
    return path


def orm(fn):
    """Run ``fn`` (database reads) in a worker thread, away from Playwright's event loop."""

    def run():
        try:
            return fn()
        finally:
            connections.close_all()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()
