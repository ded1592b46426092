"""Liveness, readiness (database, Redis, a real worker's heartbeat) and the database-down 503."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import OperationalError

from controlplane.dashboard.views import MembersPage
from controlplane.health import WORKER_HEARTBEAT_KEY
from controlplane.tenancy.api.views import MembershipViewSet

REPO = Path(__file__).resolve().parent.parent
HEARTBEAT_WAIT_SECONDS = 30


@pytest.fixture
def heartbeat_prefix(settings):
    """A cache key prefix of our own, so other test runs' workers on the same Redis
    cannot make /readyz pass or fail here (the heartbeat key is global per prefix)."""
    prefix = f"cp-health-{uuid.uuid4().hex[:12]}"
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["KEY_PREFIX"] = prefix
    settings.CACHES = caches
    cache.delete(WORKER_HEARTBEAT_KEY)
    yield prefix
    cache.delete(WORKER_HEARTBEAT_KEY)


def test_healthz_answers_without_the_database(client):
    # No django_db mark: liveness must not touch the database (pytest-django would refuse).
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok"}
    assert response["X-Request-ID"]


@pytest.mark.django_db
def test_readyz_is_503_naming_the_worker_when_no_heartbeat(client, heartbeat_prefix):
    assert cache.get(WORKER_HEARTBEAT_KEY) is None
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["mode"] == "production"
    assert body["checks"] == {"database": "ok", "redis": "ok", "worker": "down"}
    assert len(body["problems"]) == 1
    assert body["problems"][0].startswith("worker: no worker has reported a heartbeat")


@pytest.mark.django_db
def test_readyz_is_503_when_the_last_heartbeat_is_stale(client, heartbeat_prefix):
    age = django_settings.WORKER_HEARTBEAT_SECONDS * 3 + 60
    cache.set(WORKER_HEARTBEAT_KEY, {"at": time.time() - age, "hostname": "gone@host"})
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["worker"] == "down"
    assert body["problems"][0].startswith("worker: last heartbeat")


@pytest.fixture
def celery_worker_process(heartbeat_prefix, tmp_path):
    """A real ``celery worker`` (threads pool) sharing our Redis and cache prefix.

    It listens on a queue of its own, so it never takes tasks meant for other
    tests' workers on the same broker.
    """
    name = f"health-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "controlplane.settings"
    env["CACHE_KEY_PREFIX"] = heartbeat_prefix
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    log_path = tmp_path / "worker.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "controlplane",
            "worker",
            "--pool",
            "threads",
            "-c",
            "1",
            "-n",
            f"{name}@%h",
            "-Q",
            name,
            "--without-mingle",
            "--without-gossip",
            "--loglevel",
            "INFO",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield name, process, log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()


@pytest.mark.worker
@pytest.mark.django_db
def test_readyz_is_200_once_a_real_worker_reports(client, celery_worker_process, heartbeat_prefix):
    name, process, log_path = celery_worker_process
    deadline = time.monotonic() + HEARTBEAT_WAIT_SECONDS
    response = client.get("/readyz")
    while response.status_code != 200 and time.monotonic() < deadline:
        assert process.poll() is None, log_path.read_text()[-3000:]
        time.sleep(0.25)
        response = client.get("/readyz")

    assert response.status_code == 200, (response.json(), log_path.read_text()[-3000:])
    body = response.json()
    assert body == {
        "status": "ok",
        "mode": "production",
        "checks": {"database": "ok", "redis": "ok", "worker": "ok"},
    }
    beat = cache.get(WORKER_HEARTBEAT_KEY)
    assert beat["hostname"].startswith(f"{name}@")
    assert time.time() - beat["at"] < django_settings.WORKER_HEARTBEAT_SECONDS * 3
    # The heartbeat is in Redis (shared by every web process), not in a local cache.
    raw = redis.Redis.from_url(django_settings.REDIS_URL)
    assert raw.exists(f"{heartbeat_prefix}:1:{WORKER_HEARTBEAT_KEY}") == 1


def _database_down(*args, **kwargs):
    raise OperationalError("server closed the connection unexpectedly")


@pytest.mark.django_db
def test_database_error_in_an_api_view_is_a_503_json(world, api, monkeypatch):
    client = api(world.alice, world.acme)
    monkeypatch.setattr(MembershipViewSet, "refine_queryset", _database_down)
    response = client.get("/api/v1/t/acme/members/")
    assert response.status_code == 503, response.content[:500]
    assert response["Content-Type"] == "application/json"
    assert response["Retry-After"] == "5"
    assert response["X-Request-ID"]
    body = response.json()
    assert body["type"] == "server_error"
    assert [e["code"] for e in body["errors"]] == ["database_unavailable"]
    assert "retry" in body["errors"][0]["detail"]
    assert b"server closed the connection" not in response.content
    assert b"Traceback" not in response.content


@pytest.mark.django_db
def test_database_error_in_a_dashboard_page_is_a_503_page(world, client, monkeypatch):
    client.force_login(world.alice)
    monkeypatch.setattr(MembersPage, "get_context_data", _database_down)
    response = client.get("/t/acme/members/")
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert response["Retry-After"] == "5"
    assert b"The database is unavailable" in response.content
    assert b"server closed the connection" not in response.content
