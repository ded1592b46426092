"""PostgreSQL unreachable for 10 s under a real ``manage.py serve`` and a real worker: the API
answers 503 with a JSON body naming the cause (never a 500, never an HTML stack trace), a
signed-in dashboard page the 503 page, then 200 again; the runs that were in flight complete.

The server and the worker reach PostgreSQL through a TCP proxy the test cuts (every open
connection dropped, new ones refused): the shared server itself is never touched."""

from __future__ import annotations

import itertools
import time
from collections import Counter

import pytest
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.db import connection

from tests import processes
from tests.factories import make_token
from tests.reliability.faults import TcpProxy, http, wait_until
from tests.reliability.scenario import (
    LEDGER_PATH,
    check_exactly_once,
    delivery_figures,
    explain,
    ledger_definition,
    make_tools,
    make_workflow,
    statuses,
    wait_terminal,
)

pytestmark = [pytest.mark.reliability, pytest.mark.django_db(transaction=True)]

OUTAGE_SECONDS = 10
RUNS = 10
STEPS = 3


def signed_in_session(user) -> str:
    """A session key of ``user`` signed in (as the login view would store it)."""
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


@pytest.fixture
def pg_proxy():
    db = connection.settings_dict
    proxy = TcpProxy((db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)))
    yield proxy
    proxy.close()


def test_api_answers_503_json_while_postgres_is_down_and_runs_complete(
    world, cluster, ledger, pg_proxy, figures
):
    """10 three-step runs are mid-step when the proxy is cut for 10 s; meanwhile the API,
    /readyz and a dashboard page are called in a loop (each response checked), then the API
    must answer 200 again within seconds and every run (and 10 started after) succeed."""
    ledger.delays[LEDGER_PATH] = 1.0  # runs are mid-step when the database goes
    make_tools(world, ledger)
    make_workflow(world, "pg-outage", ledger_definition(STEPS))
    token = make_token(world.acme, world.alice)
    through_proxy = pg_proxy.url_for(processes.test_database_url())
    cluster.start_worker(DATABASE_URL=through_proxy)
    cluster.start_beat()
    server = cluster.start_server(DATABASE_URL=through_proxy)
    api = f"{server.base}/api/v1/t/acme"

    def start_run(key: str):
        return http(
            "POST",
            f"{api}/runs/",
            token,
            {"workflow": "pg-outage", "input": {}},
            headers={"Idempotency-Key": key},
        )

    cookie = {"Cookie": f"sessionid={signed_in_session(world.alice)}"}
    page = f"{server.base}/t/acme/runs/"
    assert http("GET", page, headers=cookie).status == 200

    run_ids = []
    for i in range(RUNS):
        response = start_run(f"before-{i}")
        assert response.status == 201, response.body[:500]
        run_ids.append(response.json()["id"])
    wait_until(lambda: len(ledger.calls(LEDGER_PATH)) >= 3, 30, "runs to be mid-step")

    probes = itertools.cycle(
        [
            ("list", lambda: http("GET", f"{api}/runs/?status=running", token)),
            ("detail", lambda: http("GET", f"{api}/runs/{run_ids[0]}/", token)),
            ("events", lambda: http("GET", f"{api}/runs/{run_ids[1]}/events/?after=0", token)),
            ("start", lambda: start_run(f"during-{time.monotonic_ns()}")),
            ("workflows", lambda: http("GET", f"{api}/workflows/", token)),
            ("readyz", lambda: http("GET", f"{server.base}/readyz")),
            ("dashboard", lambda: http("GET", page, headers=cookie)),
        ]
    )
    pg_proxy.down()
    down_at = time.monotonic()
    during: list[tuple[str, object]] = []
    while time.monotonic() < down_at + OUTAGE_SECONDS:
        name, probe = next(probes)
        during.append((name, probe()))
    pg_proxy.up()
    up_at = time.monotonic()

    problems = []
    for name, response in during:
        body = response.body.decode(errors="replace")
        if name == "dashboard":  # a page: the 503 page, not the 500 one
            if response.status != 503 or "database is unavailable" not in body:
                problems.append(f"{name}: {response.status} {response.content_type} {body[:300]}")
            continue
        if response.status != 503 or not response.content_type.startswith("application/json"):
            problems.append(f"{name}: {response.status} {response.content_type} {body[:300]}")
            continue
        data = response.json()
        if name == "readyz":
            ok = data["checks"]["database"] == "down" and any(
                p.startswith("database:") for p in data["problems"]
            )
        else:
            ok = (
                data["errors"][0]["code"] == "database_unavailable"
                and response.headers.get("retry-after") == "5"
            )
        if not ok or "Traceback" in body:
            problems.append(f"{name}: {body[:300]}")
    assert not problems, problems[:10]
    assert len(during) >= 20

    # after the outage: the API answers again, and keeps answering
    wait_until(
        lambda: http("GET", f"{api}/runs/", token).status == 200, 30, "the API to answer 200"
    )
    recovered_after = time.monotonic() - up_at
    after = Counter()
    later_ids = []
    for i in range(10):
        after[http("GET", f"{api}/runs/", token).status] += 1
        after[http("GET", f"{api}/runs/{run_ids[0]}/", token).status] += 1
        response = start_run(f"after-{i}")
        after[response.status] += 1
        if response.status == 201:
            later_ids.append(response.json()["id"])
    assert after == {200: 20, 201: 10}, after

    elapsed = wait_terminal(run_ids + later_ids, timeout=120)
    assert statuses(run_ids + later_ids) == {"succeeded": RUNS + 10}, explain(run_ids)
    once = check_exactly_once(world, run_ids + later_ids, ledger, STEPS)

    figures.update(
        outage_s=OUTAGE_SECONDS,
        requests_during_outage=len(during),
        responses_503=len(during),
        api_503_json=sum(1 for name, _ in during if name not in ("dashboard", "readyz")),
        readyz_503_json=sum(1 for name, _ in during if name == "readyz"),
        dashboard_503_page=sum(1 for name, _ in during if name == "dashboard"),
        responses_500=0,
        max_503_latency_ms=round(max(r.finished - r.started for _, r in during) * 1000, 1),
        seconds_until_api_200_after_outage=round(recovered_after, 2),
        runs_in_flight_at_outage=RUNS,
        runs_started_after=len(later_ids),
        runs_succeeded=RUNS + len(later_ids),
        seconds_after_outage_until_runs_finished=round(time.monotonic() - up_at, 1),
        seconds_waiting_for_runs=round(elapsed, 1),
        **once,
        **delivery_figures(run_ids + later_ids),
    )
