"""API latency benchmark (not a test): run start and approval -> next step, production mode.

The product runs as `make run` starts it (the Makefile's web, worker and beat recipes) on
PostgreSQL and Redis, seeded by bench_common (tenant ``bench``, an owner's write token).

- run start: ``POST /api/v1/t/bench/runs/`` of the one-step ``noop`` workflow, one request
  at a time from one keep-alive client, p50 / p95 over ``--starts`` requests (the worker runs
  the runs meanwhile, as it would). A plain authenticated GET (the workflow) is the floor.
- approval decided -> next step started: ``--approvals`` runs of ``gated`` (an approval,
  then a tool step) wait for a person; each is approved in turn with
  ``POST approvals/<id>/decide/`` and the time from sending the decide to the next step's
  ``started_at`` (read from the database) is one sample. One at a time: the next decide
  goes once the step started.

Targets (issue 14): run start p95 <= 25 ms; approval -> next step p95 <= 50 ms.

Usage: .venv/bin/python bench/api.py [--starts 300] [--approvals 100] [--worker-cmd ...]
Needs PostgreSQL and Redis on 127.0.0.1 (as `make test`); it uses its own database
(cp_bench_api, dropped and created) and Redis db 12 (flushed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import httpx
from bench_common import Product, pct

PG_DB = os.environ.get("BENCH_API_DATABASE", "cp_bench_api")
REDIS = os.environ.get("BENCH_API_REDIS_URL", "redis://127.0.0.1:6379/12")


def _summary(values: list[float]) -> dict:
    return {
        "p50_ms": statistics.median(values),
        "p95_ms": pct(values, 0.95),
        "max_ms": max(values),
        "samples": len(values),
    }


def measure_starts(client: httpx.Client, api: str, count: int) -> tuple[dict, dict]:
    """Run-start latency, and a plain authenticated GET's for comparison."""
    for _ in range(10):  # warm-up: code paths, connections, caches
        client.post(f"{api}/runs/", json={"workflow": "noop"}).raise_for_status()
        client.get(f"{api}/workflows/noop/").raise_for_status()
    gets = []
    for _ in range(100):
        t0 = time.perf_counter()
        client.get(f"{api}/workflows/noop/").raise_for_status()
        gets.append((time.perf_counter() - t0) * 1000)
    starts = []
    for _ in range(count):
        t0 = time.perf_counter()
        response = client.post(f"{api}/runs/", json={"workflow": "noop"})
        starts.append((time.perf_counter() - t0) * 1000)
        if response.status_code != 201:
            raise SystemExit(f"POST runs/ answered {response.status_code}: {response.text[:300]}")
    return _summary(starts), _summary(gets)


def measure_approvals(product: Product, client: httpx.Client, api: str, count: int) -> dict:
    """Decide -> next step started, one approval at a time."""
    db = product.db()
    tables = product.seeded["tables"]
    since = db.max_run_id()
    for _ in range(count):
        client.post(f"{api}/runs/", json={"workflow": "gated"}).raise_for_status()
    deadline = time.monotonic() + 300
    pending: list[tuple[int, int]] = []
    while time.monotonic() < deadline:
        pending = db.rows(
            f"SELECT id, run_id FROM {tables['approval']} WHERE run_id > %s "
            "AND status = 'pending' ORDER BY id",
            since,
        )
        if len(pending) >= count:
            break
        time.sleep(0.2)
    else:
        raise SystemExit(f"only {len(pending)} of {count} approvals pending after 300 s")
    time.sleep(1.0)  # the runs' last transitions settle; the worker is idle
    to_step, decides, missing = [], [], 0
    for approval_id, run_id in pending:
        sent = time.time()
        t0 = time.perf_counter()
        response = client.post(
            f"{api}/approvals/{approval_id}/decide/", json={"decision": "approve"}
        )
        decides.append((time.perf_counter() - t0) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"decide answered {response.status_code}: {response.text[:300]}")
        started = None
        wait_until = time.monotonic() + 10
        while started is None and time.monotonic() < wait_until:
            started = db.rows(
                f"SELECT started_at FROM {tables['step']} WHERE run_id = %s AND step_key = 'after'",
                run_id,
            )
            started = started[0][0] if started else None
            if started is None:
                time.sleep(0.005)
        if started is None:
            missing += 1
            continue
        to_step.append((started.timestamp() - sent) * 1000)
    db.close()
    return {
        "to_next_step": _summary(to_step) if to_step else None,
        "decide_request": _summary(decides),
        "next_step_not_started_in_10s": missing,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=300)
    parser.add_argument("--approvals", type=int, default=100)
    parser.add_argument("--worker-cmd", help="instead of the Makefile's worker recipe")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-api-") as workdir:
        product = Product("production", workdir, args.worker_cmd, database=PG_DB, redis_url=REDIS)
        try:
            product.start()
            api = f"{product.base}/api/v1/t/{product.seeded['tenant']}"
            headers = {"Authorization": f"Bearer {product.seeded['token']}"}
            with httpx.Client(headers=headers, timeout=60) as client:
                starts, gets = measure_starts(client, api, args.starts)
                time.sleep(3)  # the started runs finish; the approvals measure on a calm worker
                approvals = measure_approvals(product, client, api, args.approvals)
        finally:
            product.stop()
    load_after = os.getloadavg()[0]

    step = approvals["to_next_step"]
    decide = approvals["decide_request"]
    print("| Benchmark | Target | Measured |")
    print("|---|---|---|")
    print(
        f"| api: run start, POST runs/ (p50 / p95, {starts['samples']} starts) | p95 ≤ 25 ms "
        f"| {starts['p50_ms']:.0f} ms / {starts['p95_ms']:.0f} ms"
        f"{'' if starts['p95_ms'] <= 25 else ' (missed)'} |"
    )
    if step:
        print(
            f"| api: approval decided → next step started (p50 / p95, {step['samples']} "
            f"approvals) | p95 ≤ 50 ms | {step['p50_ms']:.0f} ms / {step['p95_ms']:.0f} ms"
            f"{'' if step['p95_ms'] <= 50 else ' (missed)'} |"
        )
    print(
        f"| api: POST approvals/…/decide/ itself (p50 / p95) | | "
        f"{decide['p50_ms']:.0f} ms / {decide['p95_ms']:.0f} ms |"
    )
    print(
        f"| api: plain authenticated GET workflows/noop/ (p50 / p95) | | "
        f"{gets['p50_ms']:.0f} ms / {gets['p95_ms']:.0f} ms |"
    )
    if approvals["next_step_not_started_in_10s"]:
        print(f"next step not started within 10 s: {approvals['next_step_not_started_in_10s']}")
    print(f"\nload average {load_before:.2f} before, {load_after:.2f} after", file=sys.stderr)
    print(
        json.dumps(
            {
                "run_start": starts,
                "plain_get": gets,
                **approvals,
                "load_before": load_before,
                "load_after": load_after,
            }
        )
    )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # every subprocess was stopped on the way out
        sys.exit(130)
