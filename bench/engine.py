"""Run-engine benchmark (not a test): prints the table in README's performance section.

(a) orchestration overhead per step (gap between a step finishing and the next one
    starting) in a 50-step pipeline of no-op tool steps, embedded and production mode;
(b) steps per second for 200 concurrent 10-step runs with 2 worker processes (production);
(c) the pure scheduler's cost per decision on a 1,000-step graph.

Usage: .venv/bin/python bench/engine.py [--runs 200] [--skip-production]
Production mode needs PostgreSQL and Redis on 127.0.0.1 (as `make test`); it uses its own
database (cp_bench) and Redis db 14.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from bench_common import FERNET, ROOT, SECRET, pct, setup_django

PG = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cp_bench")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


# ------------------------------------------------------------------------------ children --


def _seed(steps: int, slug: str):
    from controlplane import context
    from controlplane.tenancy.models import Tenant
    from controlplane.tenancy.services import tenant_create

    tenant = Tenant.objects.filter(slug="bench").first()
    with context.system_context("bench"):
        if tenant is None:
            tenant = tenant_create(slug="bench", name="Bench")
    from agents.models import Tool
    from agents.services.tools import tool_create
    from runs.models import Workflow
    from runs.workflow_services import workflow_create

    with context.system_context("bench", tenant=tenant):
        if not Tool.objects.filter(slug="noop").exists():
            tool_create(
                tenant=tenant, slug="noop", name="No-op", kind="builtin", builtin="json_extract"
            )
        workflow = Workflow.objects.filter(slug=slug).first()
        if workflow is None:
            workflow = workflow_create(
                tenant=tenant,
                slug=slug,
                name=slug,
                definition={
                    "input_schema": {"type": "object"},
                    "example_input": {},
                    "steps": [
                        {
                            "id": f"s{i}",
                            "type": "tool",
                            "tool": "noop",
                            "arguments": {"document": {"a": i}, "path": "a"},
                        }
                        for i in range(steps)
                    ],
                },
            )
    return tenant, workflow


def _start_runs(tenant, workflow, count: int) -> list[int]:
    from controlplane import context
    from runs.services import run_start

    ids = []
    with context.system_context("bench", tenant=tenant):
        for _ in range(count):
            run, _ = run_start(tenant=tenant, workflow=workflow, input={})
            ids.append(run.pk)
    return ids


def _wait(ids: list[int], timeout: float) -> None:
    from runs.models import Run

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = (
            Run.objects.unscoped()
            .filter(pk__in=ids)
            .exclude(status__in=["succeeded", "failed", "cancelled", "timed_out"])
            .count()
        )
        if not left:
            bad = Run.objects.unscoped().filter(pk__in=ids).exclude(status="succeeded").count()
            if bad:
                raise SystemExit(f"{bad} runs did not succeed")
            return
        time.sleep(0.05)
    raise SystemExit(f"runs not finished after {timeout}s")


def _gaps(ids: list[int]) -> list[float]:
    from runs.models import StepRun

    gaps = []
    for run_id in ids:
        steps = list(
            StepRun.objects.unscoped()
            .filter(run_id=run_id)
            .order_by("position")
            .values_list("started_at", "finished_at")
        )
        for (_, finished), (started, _) in itertools.pairwise(steps):
            gaps.append((started - finished).total_seconds() * 1000)
    return gaps


def child_overhead(mode: str) -> dict:
    setup_django(migrate=True)
    if mode == "embedded":
        from controlplane.embedded import start_embedded_worker

        start_embedded_worker(concurrency=2)
        time.sleep(1.0)
    tenant, workflow = _seed(50, "pipeline-50")
    _wait(_start_runs(tenant, workflow, 1), 120)  # warm-up
    ids = []
    for _ in range(5):
        run_ids = _start_runs(tenant, workflow, 1)
        _wait(run_ids, 300)
        ids += run_ids
    gaps = _gaps(ids)
    return {
        "mode": mode,
        "p50_ms": statistics.median(gaps),
        "p99_ms": pct(gaps, 0.99),
        "samples": len(gaps),
    }


def child_throughput(runs: int) -> dict:
    setup_django(migrate=True)
    tenant, workflow = _seed(10, "pipeline-10")
    _wait(_start_runs(tenant, workflow, 2), 120)
    started = time.perf_counter()
    ids = _start_runs(tenant, workflow, runs)
    _wait(ids, 900)
    elapsed = time.perf_counter() - started
    return {
        "runs": runs,
        "steps": runs * 10,
        "seconds": elapsed,
        "steps_per_second": runs * 10 / elapsed,
    }


def scheduler_cost() -> dict:
    sys.path.insert(0, str(ROOT))
    from runs.engine.definition import parse_definition
    from runs.engine.scheduler import SUCCEEDED, StepState, plan

    definition = parse_definition(
        {"steps": [{"id": f"s{i}", "type": "agent"} for i in range(1000)]}
    )
    states: dict[str, StepState] = {}
    plan(definition, states, None)  # builds and caches the graph index
    timings = []
    for i in range(1000):
        states[f"s{i}"] = StepState(SUCCEEDED)
        t0 = time.perf_counter_ns()
        plan(definition, states, [f"s{i}"])
        timings.append((time.perf_counter_ns() - t0) / 1000)
    return {
        "p50_us": statistics.median(timings),
        "p99_us": pct(timings, 0.99),
        "mean_us": statistics.fmean(timings),
    }


# -------------------------------------------------------------------------------- parent --


def _env(mode: str, data_dir: str) -> dict:
    env = {
        **os.environ,
        "CONTROLPLANE_DATA_DIR": data_dir,
        "SECRET_KEY": SECRET,
        "SECRETS_ENCRYPTION_KEYS": FERNET,
        "LOG_LEVEL": "WARNING",
        "CELERY_QUEUE": "bench",
    }
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    if mode == "production":
        env.update({"DATABASE_URL": PG, "REDIS_URL": REDIS})
    return env


def _child(args: list[str], env: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{args} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _reset_postgres() -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS cp_bench WITH (FORCE)")
        conn.execute("CREATE DATABASE cp_bench")
    import redis

    redis.Redis.from_url(REDIS).flushdb()


def _worker(env: dict, processes: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "controlplane",
            "worker",
            "-Q",
            "bench",
            "-c",
            str(processes),
            "--pool",
            "prefork",
            "--loglevel",
            "WARNING",
            "--without-mingle",
            "--without-gossip",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--skip-production", action="store_true")
    parser.add_argument("--child", choices=["overhead", "throughput"])
    parser.add_argument("--mode", default="embedded")
    args = parser.parse_args()
    if args.child == "overhead":
        print(json.dumps(child_overhead(args.mode)))
        return
    if args.child == "throughput":
        print(json.dumps(child_throughput(args.runs)))
        return

    results = {"scheduler": scheduler_cost()}
    with tempfile.TemporaryDirectory() as data_dir:
        results["embedded"] = _child(
            ["--child", "overhead", "--mode", "embedded"], _env("embedded", data_dir)
        )
    if not args.skip_production:
        _reset_postgres()
        with tempfile.TemporaryDirectory() as data_dir:
            env = _env("production", data_dir)
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=ROOT, check=True
            )
            worker = _worker(env, 2)
            try:
                time.sleep(4)
                results["production"] = _child(["--child", "overhead", "--mode", "production"], env)
                results["throughput"] = _child(
                    ["--child", "throughput", "--runs", str(args.runs)], env
                )
            finally:
                worker.terminate()
                worker.wait(timeout=30)
    print("| Benchmark | Target | Measured |")
    print("|---|---|---|")
    for mode in ("embedded", "production"):
        if mode in results:
            r = results[mode]
            print(
                f"| engine: overhead per step, {mode} (p50 / p99, {r['samples']} steps) "
                f"| ≤ 5 ms / ≤ 20 ms | {r['p50_ms']:.1f} ms / {r['p99_ms']:.1f} ms |"
            )
    if "throughput" in results:
        t = results["throughput"]
        print(
            f"| engine: throughput, {t['runs']} runs x 10 steps, 2 worker processes "
            f"| ≥ 300 steps/s | {t['steps_per_second']:.0f} steps/s "
            f"({t['seconds']:.1f} s) |"
        )
    s = results["scheduler"]
    print(
        f"| engine: scheduler per decision, 1,000-step graph (p50 / p99) | ≤ 50 µs "
        f"| {s['p50_us']:.1f} µs / {s['p99_us']:.1f} µs |"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
