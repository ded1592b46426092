"""Stop `make test` at once, with what to start, when PostgreSQL or Redis does not answer."""

from __future__ import annotations

import os
import sys
from urllib.parse import urlparse

problems: list[str] = []

db_url = os.environ["DATABASE_URL"]
try:
    import psycopg

    parsed = urlparse(db_url)
    with psycopg.connect(
        host=parsed.hostname,
        port=parsed.port or 5432,
        user=parsed.username or "postgres",
        password=parsed.password,
        dbname="postgres",
        connect_timeout=3,
    ) as conn:
        conn.execute("SELECT 1")
except Exception as exc:
    problems.append(
        f"PostgreSQL does not answer at {parsed.hostname}:{parsed.port or 5432} ({exc}).\n"
        "  Start it, e.g. `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main "
        "start` on Debian, or `docker compose up -d postgres`; the suite needs user "
        f"'{parsed.username or 'postgres'}' with trust auth (set TEST_DATABASE_URL otherwise)."
    )

redis_url = os.environ["REDIS_URL"]
try:
    import redis

    redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
except Exception as exc:
    parsed = urlparse(redis_url)
    problems.append(
        f"Redis does not answer at {parsed.hostname}:{parsed.port or 6379} ({exc}).\n"
        "  Start it, e.g. `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 "
        "--save '' --appendonly no`, or `docker compose up -d redis` "
        "(set TEST_REDIS_URL otherwise)."
    )

if problems:
    print("make test needs PostgreSQL and Redis running:\n" + "\n".join(problems), file=sys.stderr)
    sys.exit(2)
print("PostgreSQL and Redis answer.")
