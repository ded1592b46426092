"""Engine concurrency benchmark (not a test): prints the table in README's performance section.

The product runs as `make run` starts it: production mode is the Makefile's web, worker
and beat recipes (same commands and flags) on PostgreSQL and Redis, embedded mode is
``manage.py serve`` alone on SQLite in a temporary data dir. The model provider is the
scripted OpenAI-compatible server of bench/fake_provider.py on loopback with a fixed
latency (EGRESS_ALLOWED_NETWORKS=127.0.0.0/8 lets the worker reach it). Runs are started
with ``POST /api/v1/t/bench/runs/`` from a pool of HTTP clients holding an API token, and
their end is read from the database every 100 ms.

Cases (targets of issue 14, on the 2-core machine):
  single    500 concurrent single-agent runs, 2 s model latency: wall <= 8 s, all succeeded,
            peak concurrent requests at the provider >= 250, PostgreSQL connections of the
            bench database <= 40, GET runs/ p95 <= 100 ms during the load, 0 errors;
  pipeline  200 concurrent 5-step llm pipelines, 1 s latency: wall <= 12 s;
  embedded  100 concurrent single-agent runs in embedded mode, 2 s latency: wall <= 6 s.
Wall time runs from the first POST to the last run's finished_at. A missed target prints
the timeline of the case (what was queued, running, in flight at the provider each second).

Usage: .venv/bin/python bench/concurrency.py [--only single,pipeline,embedded] [--runs N]
       [--latency S] [--clients 32] [--timeout 900] [--worker-cmd "celery -A ... worker ..."]
Production mode needs PostgreSQL and Redis on 127.0.0.1 (as `make test`); it uses its own
database (cp_bench_conc, dropped and created) and Redis db 13 (flushed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time

import httpx
from bench_common import BENCH_AGENT, OBSERVER, PG_ADMIN_URL, CpuMeter, Product, pct

PG_DB = os.environ.get("BENCH_CONC_DATABASE", "cp_bench_conc")
REDIS = os.environ.get("BENCH_CONC_REDIS_URL", "redis://127.0.0.1:6379/13")
TERMINAL = ("succeeded", "failed", "cancelled", "timed_out")

CASES = {
    # name: (mode, runs, latency, start body, wall target in seconds)
    "single": ("production", 500, 2.0, {"agent": BENCH_AGENT, "input": "hi"}, 8.0),
    "pipeline": ("production", 200, 1.0, {"workflow": "llm-5", "input": "hi"}, 12.0),
    "embedded": ("embedded", 100, 2.0, {"agent": BENCH_AGENT, "input": "hi"}, 6.0),
}


# ------------------------------------------------------------------ PostgreSQL peaks --


class PgConnections(threading.Thread):
    """Polls pg_stat_activity every 100 ms: the bench database's connections (open, and
    not idle), peaks and the latest sample."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_open = self.peak_active = self.open = self.active = 0
        self.halt = threading.Event()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            while not self.halt.is_set():
                self.open, self.active = conn.execute(
                    "SELECT COUNT(*), COUNT(*) FILTER (WHERE state IS DISTINCT FROM 'idle') "
                    "FROM pg_stat_activity WHERE datname = %s AND application_name <> %s",
                    (PG_DB, OBSERVER),
                ).fetchone()
                self.peak_open = max(self.peak_open, self.open)
                self.peak_active = max(self.peak_active, self.active)
                self.halt.wait(0.1)


# --------------------------------------------------------------------------- the load --


async def run_case(
    product: Product,
    name: str,
    runs: int,
    latency: float,
    body: dict,
    clients: int,
    timeout: float,
) -> dict:
    """Start ``runs`` runs at once and watch them to the end."""
    token = product.seeded["token"]
    api = f"{product.base}/api/v1/t/{product.seeded['tenant']}"
    headers = {"Authorization": f"Bearer {token}"}
    db = product.db()
    since = db.max_run_id()
    pg = PgConnections() if product.mode == "production" else None
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with (
        httpx.AsyncClient(headers=headers, limits=limits, timeout=60) as client,
        httpx.AsyncClient(headers=headers, timeout=60) as sampler,
        httpx.AsyncClient(timeout=10) as provider,
    ):
        await provider.post(f"{product.provider}/config", json={"latency": latency})
        await provider.post(f"{product.provider}/reset")
        if pg:
            pg.start()
        posts: list[tuple[float, int]] = []  # (seconds, status) per POST
        errors: list[str] = []
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(runs):
            queue.put_nowait(i)
        done = asyncio.Event()
        meter = CpuMeter(product.processes, PG_DB if product.mode == "production" else None)
        started = time.time()

        async def poster() -> None:
            while True:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                try:
                    response = await client.post(f"{api}/runs/", json=body)
                    status = response.status_code
                    if status != 201:
                        errors.append(f"POST runs/ {status}: {response.text[:200]}")
                except httpx.HTTPError as exc:
                    status = 0
                    errors.append(f"POST runs/: {type(exc).__name__}: {exc}")
                posts.append((time.perf_counter() - t0, status))

        list_latencies: list[float] = []

        async def list_sampler() -> None:
            while not done.is_set():
                t0 = time.perf_counter()
                try:
                    response = await sampler.get(f"{api}/runs/")
                    if response.status_code != 200:
                        errors.append(f"GET runs/ {response.status_code}")
                except httpx.HTTPError as exc:
                    errors.append(f"GET runs/: {type(exc).__name__}")
                list_latencies.append((time.perf_counter() - t0) * 1000)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), 0.1)

        timeline: list[dict] = []
        provider_peak = 0

        async def watcher() -> None:
            nonlocal provider_peak
            last_row = -1.0
            while True:
                await asyncio.sleep(0.1)
                run_states, step_states = await asyncio.to_thread(db.states, since)
                stats = (await provider.get(f"{product.provider}/stats")).json()
                provider_peak = max(provider_peak, stats["peak"])
                elapsed = time.time() - started
                finished = sum(run_states.get(s, 0) for s in TERMINAL)
                created = sum(1 for _, status in posts if status == 201)
                if elapsed - last_row >= 1.0:
                    last_row = elapsed
                    await asyncio.to_thread(meter.sample)
                    timeline.append(
                        {
                            "t": round(elapsed, 1),
                            "posted": len(posts),
                            "queued": run_states.get("queued", 0),
                            "running": run_states.get("running", 0),
                            "finished": finished,
                            "steps_running": step_states.get("running", 0),
                            "steps_queued": step_states.get("queued", 0),
                            "at_provider": stats["current"],
                            "pg_open": pg.open if pg else None,
                        }
                    )
                if len(posts) == runs and finished >= created:
                    return
                if elapsed > timeout:
                    errors.append(f"not finished after {timeout:.0f} s: {run_states}")
                    return

        posted_in = 0.0

        async def posters() -> None:
            nonlocal posted_in
            await asyncio.gather(*(poster() for _ in range(clients)))
            posted_in = time.time() - started

        sampling = asyncio.create_task(list_sampler()) if name == "single" else None
        await asyncio.gather(posters(), watcher())
        done.set()
        if sampling:
            await sampling
        stats = (await provider.get(f"{product.provider}/stats")).json()
        cpu = meter.totals()
    if pg:
        pg.halt.set()
        pg.join()
    run_states, _ = db.states(since)
    last = db.last_finished(since)
    db.close()
    post_ms = [seconds * 1000 for seconds, _ in posts]
    return {
        "case": name,
        "mode": product.mode,
        "runs": runs,
        "latency": latency,
        "clients": clients,
        "wall_s": (last - started) if last else None,
        "posted_in_s": posted_in,
        "succeeded": run_states.get("succeeded", 0),
        "not_succeeded": {k: v for k, v in run_states.items() if k != "succeeded"},
        "errors": len(errors),
        "error_samples": errors[:5],
        "post_p50_ms": statistics.median(post_ms),
        "post_p95_ms": pct(post_ms, 0.95),
        "provider_peak": max(provider_peak, stats["peak"]),
        "provider_total": stats["total"],
        "pg_peak_open": pg.peak_open if pg else None,
        "pg_peak_active": pg.peak_active if pg else None,
        "list_p95_ms": pct(list_latencies, 0.95) if list_latencies else None,
        "list_samples": len(list_latencies),
        "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
        "timeline": timeline,
    }


async def warm_up(product: Product) -> None:
    """Two runs end to end, so worker processes have imported and connected."""
    headers = {"Authorization": f"Bearer {product.seeded['token']}"}
    api = f"{product.base}/api/v1/t/{product.seeded['tenant']}"
    async with httpx.AsyncClient(headers=headers, timeout=60) as client:
        ids = []
        for _ in range(2):
            response = await client.post(
                f"{api}/runs/", json={"agent": BENCH_AGENT, "input": "warm"}
            )
            response.raise_for_status()
            ids.append(response.json()["id"])
        deadline = time.monotonic() + 120
        for run_id in ids:
            while time.monotonic() < deadline:
                status = (await client.get(f"{api}/runs/{run_id}/")).json()["status"]
                if status in TERMINAL:
                    break
                await asyncio.sleep(0.2)
            else:
                raise SystemExit("warm-up runs did not finish in 120 s: is the worker running?")


# ---------------------------------------------------------------------------- report --


def _fmt(value, unit: str = "", digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def rows(result: dict, wall_target: float) -> list[tuple[str, str, str, bool]]:
    """(benchmark, target, measured, met) rows of one case."""
    r = result
    what = {
        "single": f"{r['runs']} concurrent single-agent runs, {r['latency']:g} s model latency",
        "pipeline": f"{r['runs']} concurrent 5-step llm pipelines, {r['latency']:g} s latency",
        "embedded": f"embedded: {r['runs']} concurrent single-agent runs, {r['latency']:g} s",
    }[r["case"]]
    wall = r["wall_s"]
    out = [
        (
            f"concurrency: {what}: wall",
            f"≤ {wall_target:g} s",
            f"{_fmt(wall, ' s')} (POSTs done at {r['posted_in_s']:.1f} s)",
            wall is not None and wall <= wall_target and r["succeeded"] == r["runs"],
        ),
        (
            f"concurrency: {what}: succeeded",
            f"{r['runs']}",
            f"{r['succeeded']}" + (f" (others {r['not_succeeded']})" if r["not_succeeded"] else ""),
            r["succeeded"] == r["runs"],
        ),
    ]
    if r["case"] == "single":
        want_peak = r["runs"] // 2
        out += [
            (
                f"concurrency: {what}: peak requests in flight at the provider",
                f"≥ {want_peak}",
                f"{r['provider_peak']}",
                r["provider_peak"] >= want_peak,
            ),
            (
                f"concurrency: {what}: PostgreSQL connections (peak open / not idle)",
                "≤ 40",
                f"{r['pg_peak_open']} / {r['pg_peak_active']}",
                (r["pg_peak_open"] or 0) <= 40,
            ),
            (
                f"concurrency: {what}: GET runs/ p95 during the load ({r['list_samples']} samples)",
                "≤ 100 ms",
                _fmt(r["list_p95_ms"], " ms", 0),
                r["list_p95_ms"] is not None and r["list_p95_ms"] <= 100,
            ),
            (
                f"concurrency: {what}: errors",
                "0",
                f"{r['errors']}",
                r["errors"] == 0,
            ),
        ]
    cpu = r["cpu_s"]
    known = ("web", "worker", "postgres", "beat", "provider", "bench client")
    parts = [p for p in known if p in cpu]
    out.append(
        (
            f"concurrency: {what}: CPU per run ({', '.join(parts)}; "
            f"machine {cpu['machine busy']:.0f} of {cpu['machine capacity']:.0f} core-s busy, "
            f"{cpu['others']:.0f} by other processes)",
            "",
            " / ".join(f"{cpu[p] * 1000 / r['runs']:.0f} ms" for p in parts),
            True,
        )
    )
    out.append(
        (
            f"concurrency: {what}: POST runs/ p50 / p95 ({r['clients']} clients)",
            "",
            f"{r['post_p50_ms']:.0f} ms / {r['post_p95_ms']:.0f} ms",
            True,
        )
    )
    return out


def print_timeline(result: dict) -> None:
    print(f"\nWhere the time went ({result['case']}): one row a second")
    columns = [
        "t",
        "posted",
        "queued",
        "running",
        "finished",
        "steps_queued",
        "steps_running",
        "at_provider",
        "pg_open",
    ]
    timeline = result["timeline"]
    steady = [r for r in timeline if r["posted"] == result["runs"]]
    rate = "no steady phase"
    if len(steady) > 1:
        span = max(0.1, steady[-1]["t"] - steady[0]["t"])
        rate = f"{(steady[-1]['finished'] - steady[0]['finished']) / span:.1f} runs finished"
        rate += " per second once all were posted"
    print(
        f"POSTs took {result['posted_in_s']:.1f} s (p50 {result['post_p50_ms']:.0f} ms); "
        f"at most {max((r['steps_running'] for r in timeline), default=0)} steps running and "
        f"{result['provider_peak']} requests at the provider at once; {rate}"
    )
    every = max(1, len(timeline) // 60)  # about 60 rows
    if every > 1:
        print(f"(every {every}th row of {len(timeline)})")
    print("  ".join(f"{c:>13}" for c in columns))
    for index, row in enumerate(timeline):
        if index % every == 0 or index == len(timeline) - 1:
            print("  ".join(f"{'-' if row[c] is None else row[c]!s:>13}" for c in columns))
    if result["error_samples"]:
        print("errors, first ones:", *result["error_samples"], sep="\n  ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="single,pipeline,embedded", help="cases, comma-separated")
    parser.add_argument("--runs", type=int, help="runs per case (default: the case's)")
    parser.add_argument("--latency", type=float, help="model latency in s (default: the case's)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent POSTs")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per case")
    parser.add_argument("--worker-cmd", help="instead of the Makefile's worker recipe")
    parser.add_argument("--keep-logs", action="store_true", help="print the log dir, keep it")
    args = parser.parse_args()
    chosen = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = set(chosen) - set(CASES)
    if unknown:
        raise SystemExit(f"unknown cases {sorted(unknown)}; choose from {sorted(CASES)}")

    print(f"load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}", file=sys.stderr)
    results = []
    workdir = tempfile.mkdtemp(prefix="bench-conc-")
    try:
        for mode in ("production", "embedded"):
            cases = [c for c in chosen if CASES[c][0] == mode]
            if not cases:
                continue
            product = Product(mode, workdir, args.worker_cmd, database=PG_DB, redis_url=REDIS)
            try:
                product.start()
                asyncio.run(warm_up(product))
                for case in cases:
                    _, runs, latency, body, target = CASES[case]
                    load = os.getloadavg()[0]
                    result = asyncio.run(
                        run_case(
                            product,
                            case,
                            args.runs or runs,
                            args.latency if args.latency is not None else latency,
                            body,
                            args.clients,
                            args.timeout,
                        )
                    )
                    result["load_before"] = load
                    result["load_after"] = os.getloadavg()[0]
                    result["wall_target"] = target
                    result["worker"] = " ".join(getattr(product, "worker_argv", ["embedded"]))
                    results.append(result)
                    print(
                        f"{case}: wall {_fmt(result['wall_s'], ' s')}, "
                        f"succeeded {result['succeeded']}/{result['runs']}",
                        file=sys.stderr,
                    )
            finally:
                product.stop()
    finally:
        if args.keep_logs:
            print(f"logs: {workdir}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)

    print("| Benchmark | Target | Measured |")
    print("|---|---|---|")
    missed = []
    for result in results:
        for benchmark, target, measured, met in rows(result, result["wall_target"]):
            print(f"| {benchmark} | {target} | {measured}{'' if met else ' (missed)'} |")
            if not met and result not in missed:
                missed.append(result)
    for result in results:
        print(
            f"\n{result['case']}: load average {result['load_before']:.2f} before, "
            f"{result['load_after']:.2f} after; worker: {result['worker']}"
        )
    for result in missed:
        print_timeline(result)
    print(json.dumps([{k: v for k, v in r.items() if k != "timeline"} for r in results]))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # every subprocess was stopped on the way out
        sys.exit(130)
