"""Liveness (/healthz) and readiness (/readyz: database, Redis, a worker heartbeat)."""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse

WORKER_HEARTBEAT_KEY = "worker-heartbeat"


def healthz(request):
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return f"database: {type(exc).__name__}: {str(exc).strip()[:200]}"
    return None


def _check_redis() -> str | None:
    if settings.EMBEDDED:
        return None
    import redis

    try:
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1
        )
        client.ping()
    except Exception as exc:
        return f"redis: {type(exc).__name__}: {str(exc).strip()[:200]}"
    return None


def _check_worker() -> str | None:
    try:
        beat = cache.get(WORKER_HEARTBEAT_KEY)
    except Exception as exc:
        return f"worker: heartbeat unreadable ({type(exc).__name__})"
    limit = settings.WORKER_HEARTBEAT_SECONDS * 3
    if beat is None:
        return "worker: no worker has reported a heartbeat; start one (make worker)"
    age = time.time() - float(beat["at"])
    if age > limit:
        return f"worker: last heartbeat {age:.0f}s ago (limit {limit}s)"
    return None


def readyz(request):
    checks = {"database": _check_database(), "redis": _check_redis(), "worker": _check_worker()}
    down = {name: problem for name, problem in checks.items() if problem}
    body = {
        "status": "ok" if not down else "unavailable",
        "mode": settings.MODE,
        "checks": {name: ("down" if name in down else "ok") for name in checks},
    }
    if down:
        body["problems"] = list(down.values())
    return JsonResponse(body, status=503 if down else 200)
