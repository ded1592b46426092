"""Dashboard benchmark (not a test): every page's server response time over a big tenant.

Seeds the demo (``seed_demo``) into a database of its own (controlplane_bench, created and
dropped here), then 100,000 runs of the demo workflows spread over 30 days (their steps,
with failures pinned to agents) and 1,000,000 run events (10 a run: model calls, tool
calls, some failing) with PostgreSQL COPY, and times each dashboard page through Django's
test client in this process (middleware, views, queries, templates; no network), signed
in as alice (owner, who sees every section). Target: p50 <= 300 ms on every page.

Usage: .venv/bin/python bench/dashboard.py [--runs 100000] [--events-per-run 10]
                                           [--repeat 7] [--keep] [--reuse]
Needs PostgreSQL and Redis on 127.0.0.1 (as `make test`); uses Redis db 13.
``--keep`` leaves the database for a look; ``--reuse`` times an existing one again.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal

from bench_common import FERNET, ROOT, SECRET, setup_django

DB = "controlplane_bench"
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG = os.environ.get("BENCH_DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{DB}")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
TARGET_MS = 300
DAYS = 30
CHUNK = 20_000  # rows per COPY write

STATUSES = [  # (status, share)
    ("succeeded", 0.80),
    ("failed", 0.10),
    ("cancelled", 0.03),
    ("timed_out", 0.02),
    ("running", 0.03),
    ("waiting", 0.01),
    ("queued", 0.01),
]
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}


# ------------------------------------------------------------------------------ seeding --


def _text(value) -> str:
    """One value in COPY's text format."""
    if value is None:
        return "\\N"
    if isinstance(value, dict | list):
        value = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    elif isinstance(value, datetime.datetime):
        value = value.isoformat()
    else:
        value = str(value)
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def _copy(cursor, table: str, columns: list[str], rows) -> int:
    """COPY ``rows`` (an iterable of tuples) into ``table``; the number of rows."""
    count = 0
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    with cursor.copy(sql) as copy:
        buffer: list[str] = []
        for row in rows:
            buffer.append("\t".join(_text(v) for v in row))
            count += 1
            if len(buffer) >= CHUNK:
                copy.write("\n".join(buffer) + "\n")
                buffer.clear()
        if buffer:
            copy.write("\n".join(buffer) + "\n")
    return count


def seed(runs: int, events_per_run: int) -> dict:
    """The demo, then ``runs`` runs with their steps and events; the seconds each part took."""
    import io

    from django.core.management import call_command
    from django.db import connection

    from agents.models import Agent, AgentVersion
    from controlplane import context
    from controlplane.tenancy.models import Tenant
    from runs.models import Run, RunEvent, StepRun, Workflow, WorkflowVersion

    timings = {}
    t0 = time.perf_counter()
    call_command("seed_demo", stdout=io.StringIO())
    timings["demo_s"] = time.perf_counter() - t0

    tenant = Tenant.objects.get(slug="acme")
    with context.tenant_context(tenant):
        workflows = list(Workflow.objects.select_related("current_version").order_by("slug"))
        agent_versions = {
            a.slug: a.current_version_id
            for a in Agent.objects.filter(current_version__isnull=False)
        }
        assert AgentVersion.objects.exists() and WorkflowVersion.objects.exists()
    from django.contrib.auth import get_user_model

    oliver = get_user_model().objects.get(username="oliver").pk
    rng = random.Random(6)
    now = datetime.datetime.now(datetime.UTC)
    statuses = [s for s, _ in STATUSES]
    weights = [w for _, w in STATUSES]

    with connection.cursor() as c:
        c.execute(f"SELECT COALESCE(MAX(id), 0) FROM {Run._meta.db_table}")
        first_run = c.fetchone()[0] + 1
    plans = []  # (run id, workflow, status, created, started, finished)
    t0 = time.perf_counter()
    for i in range(runs):
        run_id = first_run + i
        workflow = workflows[i % len(workflows)]
        status = rng.choices(statuses, weights)[0]
        created = now - datetime.timedelta(seconds=rng.uniform(0, DAYS * 86400))
        started = created + datetime.timedelta(milliseconds=rng.uniform(5, 200))
        seconds = min(600.0, rng.lognormvariate(1.6, 0.8))
        finished = started + datetime.timedelta(seconds=seconds) if status in TERMINAL else None
        if finished is not None and finished > now:
            finished = now
        plans.append((run_id, workflow, status, created, started, finished))
    timings["plan_s"] = time.perf_counter() - t0

    def run_iter():
        for run_id, workflow, status, created, started, finished in plans:
            tokens_in = rng.randint(200, 4000) if status != "queued" else 0
            tokens_out = rng.randint(50, 800) if status != "queued" else 0
            cost = Decimal(tokens_in * 3 + tokens_out * 15) / Decimal(1_000_000)
            yield (
                run_id,
                tenant.pk,
                workflow.pk,
                workflow.current_version_id,
                workflow.current_version.definition,
                status,
                "a step failed" if status == "failed" else "",
                {"message": f"ticket {run_id}", "customer": "Dana Scully"},
                {"summary": "done"} if status == "succeeded" else None,
                {},
                tokens_in,
                tokens_out,
                cost,
                min(3, len(workflow.current_version.definition["steps"])),
                200,
                events_per_run,
                "",
                0,
                oliver,
                created,
                started if status != "queued" else None,
                finished,
                finished or started,
            )

    def steps_of(plan):
        run_id, workflow, status, created, _, finished = plan
        steps = workflow.current_version.definition["steps"][:3]
        for position, step in enumerate(steps):
            last = position == len(steps) - 1
            if status == "succeeded" or not last:
                step_status = "succeeded"
            elif status in ("failed", "timed_out"):
                step_status = "failed"
            elif status == "cancelled":
                step_status = "cancelled"
            elif status == "waiting":
                step_status = "waiting"
            else:
                step_status = "running" if status == "running" else "queued"
            agent = step.get("agent") or step.get("start")
            yield (
                run_id,
                step["id"],
                step["type"],
                position,
                step_status,
                step_status == "failed",
                agent,
                created,
                finished,
            )

    def step_iter():
        for plan in plans:
            if plan[2] == "queued":
                continue
            for run_id, key, kind, position, st, failed, agent, created, finished in steps_of(plan):
                yield (
                    tenant.pk,
                    run_id,
                    key,
                    kind,
                    position,
                    st,
                    1,
                    1,
                    1,
                    {"text": "input"},
                    {"text": "output"} if st == "succeeded" else None,
                    {"code": "provider_error", "message": "the model did not answer"}
                    if failed
                    else None,
                    {},
                    "",
                    False,
                    agent_versions.get(agent),
                    "",
                    "",
                    rng.randint(100, 2000),
                    rng.randint(20, 400),
                    Decimal("0.0012"),
                    created,
                    created,
                    finished if st in ("succeeded", "failed", "cancelled") else None,
                    finished or created,
                )

    def event_iter():
        for run_id, workflow, status, created, started, finished in plans:
            end = finished or started
            span = max((end - created).total_seconds(), 0.01)
            first = workflow.current_version.definition["steps"][0]
            key = first["id"]
            agent = first.get("agent") or "billing-support"
            tool_failed = status == "failed" and rng.random() < 0.5
            tool = rng.choice(["kb_search", "ticket-create", "refund-issue", "order-lookup"])
            types = [
                ("run.created", "", {"workflow": workflow.slug, "version": 1}),
                ("run.started", "", {}),
                ("step.queued", key, {"type": first["type"]}),
                ("step.started", key, {"attempt": 1}),
                (
                    "model.call",
                    key,
                    {
                        "agent": agent,
                        "model": "sim-1",
                        "provider": "simulated",
                        "input_tokens": 812,
                        "output_tokens": 120,
                        "cost_usd": 0.0021,
                        "latency_ms": 84.2,
                        "stop_reason": "tool_calls",
                        "tool_calls": [tool],
                        "content": "",
                    },
                ),
                (
                    "tool.call",
                    key,
                    {
                        "agent": agent,
                        "tool": tool,
                        "arguments": {"query": "refund policy"},
                        "latency_ms": 12.5,
                        **(
                            {"error": "upstream timed out"}
                            if tool_failed
                            else {"result": {"hits": 3}}
                        ),
                    },
                ),
                (
                    "model.call",
                    key,
                    {
                        "agent": agent,
                        "model": "sim-1",
                        "provider": "simulated",
                        "input_tokens": 990,
                        "output_tokens": 210,
                        "cost_usd": 0.0035,
                        "latency_ms": 91.0,
                        "stop_reason": "end",
                        "content": "Your refund is on its way.",
                    },
                ),
                ("step.succeeded", key, {"duration_ms": 812.0, "output": {"text": "ok"}}),
                ("policy.decision", key, {"effect": "allow", "action": "call_tool", "tool": tool}),
                (f"run.{status}" if status in TERMINAL else "run.waiting", "", {}),
            ]
            for seq in range(1, events_per_run + 1):
                kind, step_key, payload = types[(seq - 1) % len(types)]
                at = created + datetime.timedelta(seconds=span * seq / events_per_run)
                yield (tenant.pk, run_id, seq, kind, step_key, payload, at)

    with connection.cursor() as c:
        raw = c.connection.cursor()  # psycopg's own cursor: COPY
        t0 = time.perf_counter()
        timings["runs"] = _copy(
            raw,
            Run._meta.db_table,
            [
                "id",
                "tenant_id",
                "workflow_id",
                "workflow_version_id",
                "definition",
                "status",
                "status_reason",
                "input",
                "output",
                "context",
                "input_tokens",
                "output_tokens",
                "cost_usd",
                "step_count",
                "max_steps",
                "event_seq",
                "idempotency_key",
                "resume_count",
                "created_by_id",
                "created_at",
                "started_at",
                "finished_at",
                "updated_at",
            ],
            run_iter(),
        )
        timings["runs_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        timings["steps"] = _copy(
            raw,
            StepRun._meta.db_table,
            [
                "tenant_id",
                "run_id",
                "step_key",
                "step_type",
                "position",
                "status",
                "attempt",
                "max_attempts",
                "delivery_count",
                "input",
                "output",
                "error",
                "state",
                "route",
                "tolerated",
                "agent_version_id",
                "claim_token",
                "claimed_by",
                "input_tokens",
                "output_tokens",
                "cost_usd",
                "created_at",
                "started_at",
                "finished_at",
                "updated_at",
            ],
            step_iter(),
        )
        timings["steps_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        timings["events"] = _copy(
            raw,
            RunEvent._meta.db_table,
            ["tenant_id", "run_id", "seq", "type", "step_key", "payload", "created_at"],
            event_iter(),
        )
        timings["events_s"] = time.perf_counter() - t0
        for model in (Run, StepRun, RunEvent):
            table = model._meta.db_table
            raw.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT MAX(id) FROM {table}))"
            )
    # what autovacuum does to a month of rows: statistics, and the visibility map that lets
    # PostgreSQL answer from an index alone
    t0 = time.perf_counter()
    with connection.cursor() as c:
        for model in (Run, StepRun, RunEvent):
            c.execute(f"VACUUM ANALYZE {model._meta.db_table}")
        c.execute("ANALYZE")
    timings["analyze_s"] = time.perf_counter() - t0
    return timings


# ------------------------------------------------------------------------------- timing --


def _pages() -> list[tuple[str, str]]:
    """(name, path) of every GET page of the dashboard namespace, with real objects."""
    from django.urls import URLPattern, URLResolver, get_resolver, reverse

    from controlplane import context
    from controlplane.tenancy.models import Tenant
    from runs.models import Run

    tenant = Tenant.objects.get(slug="acme")
    found: list[tuple[str, object]] = []

    def walk(patterns, namespaces):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                inner = [*namespaces, pattern.namespace] if pattern.namespace else namespaces
                walk(pattern.url_patterns, inner)
            elif isinstance(pattern, URLPattern) and pattern.name and namespaces == ["dashboard"]:
                found.append((pattern.name, pattern))

    walk(get_resolver().url_patterns, [])
    pages = []
    skipped = []
    with context.tenant_context(tenant):
        typical_run = Run.objects.filter(status="succeeded").order_by("-id").first()
        for name, pattern in found:
            if name in ("login", "logout", "home"):
                continue
            keys = set(pattern.pattern.converters) - {"tenant"}
            kwargs = {"tenant": "acme"}
            view = getattr(pattern.callback, "view_class", None)
            if keys:
                model = getattr(view, "model", None)
                field = getattr(view, "lookup_field", "slug")
                if name == "run-detail":
                    obj = typical_run
                elif model is not None:
                    obj = model.objects.order_by("pk").first()
                else:
                    obj = None
                if obj is None or len(keys) != 1:
                    skipped.append(name)
                    continue
                kwargs[keys.pop()] = getattr(obj, field)
            pages.append((name, reverse(f"dashboard:{name}", kwargs=kwargs)))
    extra = [
        ("overview ?window=24h", "/t/acme/?window=24h"),
        ("overview ?window=7d", "/t/acme/?window=7d"),
        ("overview ?window=30d", "/t/acme/?window=30d"),
        ("runs ?status=failed", "/t/acme/runs/?status=failed"),
        ("runs ?page=1000", "/t/acme/runs/?page=1000"),
        ("runs ?workflow=support-ticket", "/t/acme/runs/?workflow=support-ticket"),
    ]
    for name in skipped:
        print(f"skipped {name}: no object to show", file=sys.stderr)
    return pages + extra


def time_pages(repeat: int) -> list[dict]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")  # an allowed host, as a browser would send
    client.force_login(get_user_model().objects.get(username="alice"))
    results = []
    for name, path in _pages():
        response = client.get(path)  # warm-up (templates, caches)
        if response.status_code != 200:
            results.append({"page": name, "path": path, "status": response.status_code})
            continue
        with CaptureQueriesContext(connection) as queries:
            client.get(path)
        count = len(queries)  # now: the next request clears the log
        samples = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            client.get(path)
            samples.append((time.perf_counter() - t0) * 1000)
        results.append(
            {
                "page": name,
                "path": path,
                "status": 200,
                "p50_ms": statistics.median(samples),
                "max_ms": max(samples),
                "queries": count,
                "bytes": len(response.content),
            }
        )
    return results


def child(args) -> None:
    setup_django(migrate=True)
    out: dict = {}
    if not args.reuse:
        out["seed"] = seed(args.runs, args.events_per_run)
    out["pages"] = time_pages(args.repeat)
    print(json.dumps(out, default=str))


# ------------------------------------------------------------------------------- parent --


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--events-per-run", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="leave the database afterwards")
    parser.add_argument("--reuse", action="store_true", help="time an already seeded database")
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    if not args.reuse:
        _admin(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        _admin(f"CREATE DATABASE {DB}")
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as data_dir:
            env = {
                **os.environ,
                "DATABASE_URL": PG,
                "REDIS_URL": REDIS,
                "SECRET_KEY": SECRET,
                "SECRETS_ENCRYPTION_KEYS": FERNET,
                "CONTROLPLANE_DATA_DIR": data_dir,
                "DEMO_PASSWORD": "bench-password-1",
                "DEBUG": "false",
                "LOG_LEVEL": "WARNING",
            }
            forwarded = [a for a in sys.argv[1:] if a not in ("--keep",)]
            out = subprocess.run(
                [sys.executable, __file__, "--child", *forwarded],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:
                raise SystemExit(f"benchmark failed:\n{out.stdout[-2000:]}\n{out.stderr[-6000:]}")
            if out.stderr.strip():
                print(out.stderr.strip(), file=sys.stderr)
            results = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        if not args.keep:
            _admin(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    seed_info = results.get("seed")
    if seed_info:
        print(
            f"seeded {seed_info['runs']:,} runs ({seed_info['runs_s']:.1f} s), "
            f"{seed_info['steps']:,} steps ({seed_info['steps_s']:.1f} s), "
            f"{seed_info['events']:,} events ({seed_info['events_s']:.1f} s), "
            f"vacuum and analyze {seed_info['analyze_s']:.1f} s; "
            f"total {time.perf_counter() - started:.0f} s"
        )
    print(f"| Page | Path | p50 ms | max ms | Queries | ≤ {TARGET_MS} ms |")
    print("|---|---|---|---|---|---|")
    slow = []
    for r in results["pages"]:
        if r["status"] != 200:
            print(f"| {r['page']} | `{r['path']}` | HTTP {r['status']} | | | ✗ |")
            slow.append(r["page"])
            continue
        ok = r["p50_ms"] <= TARGET_MS
        if not ok:
            slow.append(r["page"])
        print(
            f"| {r['page']} | `{r['path']}` | {r['p50_ms']:.0f} | {r['max_ms']:.0f} "
            f"| {r['queries']} | {'✓' if ok else '✗'} |"
        )
    print(json.dumps(results))
    if slow:
        raise SystemExit(f"over {TARGET_MS} ms (p50) or failing: {', '.join(slow)}")


if __name__ == "__main__":
    main()
