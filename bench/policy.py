"""Policy benchmark (not a test): prints the rows of README's performance table for policies.

(a) decision latency, p50 / p99, with 10, 100 and 1,000 rules in a tenant: ``decide()`` on a
    compiled policy set, excluding the database write of the decision;
(b) the added cost of the policy check to a tool call inside a real run on PostgreSQL: the
    engine's ``StepPolicy.check`` for a run's step (decide + the stored decision row + the
    run event + the audit row when a call is refused), with 1,000 rules applied.

Usage: .venv/bin/python bench/policy.py [--samples 20000] [--skip-database]
(b) needs PostgreSQL and Redis on 127.0.0.1 (as `make test`); it uses its own database
(cp_bench_policy) and Redis db 14.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

from bench_common import FERNET, ROOT, SECRET, pct, setup_django

PG = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cp_bench_policy")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
TOOLS = 200
AGENTS = 50


def make_rules(count: int, seed: int = 7) -> list[dict]:
    """A tenant's rules as people write them: mostly about one tool or a tool tag, some about
    agents or models, a few broad ones; about half carry a condition."""
    rng = random.Random(seed)
    rules = []
    for i in range(count):
        kind = rng.random()
        rule: dict = {"id": f"r{i}", "effect": rng.choice(["allow", "deny", "require_approval"])}
        if kind < 0.6:
            rule["tools"] = [f"tool-{rng.randrange(TOOLS)}"]
            rule["actions"] = ["call_tool"]
        elif kind < 0.75:
            rule["tools"] = [f"tag:t{rng.randrange(20)}"]
        elif kind < 0.9:
            rule["agents"] = [f"agent-{rng.randrange(AGENTS)}"]
        elif kind < 0.98:
            rule["models"] = [f"model-{rng.randrange(10)}"]
            rule["actions"] = ["call_model"]
        else:
            # a broad rule every tool call meets, narrowed by its condition
            rule["actions"] = ["call_tool"]
            rule["effect"] = "require_approval"
            rule["condition"] = f"args.amount > {1000 + rng.randrange(1000)}"
        if "condition" not in rule and rng.random() < 0.5:
            rule["condition"] = rng.choice(
                [
                    f"args.amount > {rng.randrange(1000)}",
                    "'vip' in agent_tags && spend.cost_usd < 5.0",
                    f"has(args.region) && args.region == 'eu-{rng.randrange(5)}'",
                    "hour >= 18 || weekday >= 5",
                ]
            )
        rule["priority"] = rng.randrange(-10, 10)
        rules.append(rule)
    return rules


def make_requests(count: int, seed: int = 11):
    from policies.decision import PolicyRequest

    rng = random.Random(seed)
    out = []
    for _ in range(count):
        out.append(
            PolicyRequest(
                tenant_id=1,
                action="call_tool",
                agent=f"agent-{rng.randrange(AGENTS)}",
                agent_tags=("support",) if rng.random() < 0.5 else ("vip",),
                tool=f"tool-{rng.randrange(TOOLS)}",
                tool_tags=(f"t{rng.randrange(20)}",),
                risk=rng.choice(["read", "write", "destructive"]),
                arguments={"amount": rng.randrange(2000), "region": f"eu-{rng.randrange(5)}"},
                run_id=1,
                run_input={"message": "refund please"},
                spend={"tokens": 1200, "cost_usd": 0.4, "steps": 3, "wall_seconds": 12.0},
            )
        )
    return out


def decision_latency(samples: int) -> list[dict]:
    sys.path.insert(0, str(ROOT))
    from policies.decision import PolicySet, decide
    from policies.definition import compile_rules, validate_definition

    requests = make_requests(samples)
    results = []
    for count in (10, 100, 1000):
        definition = {"rules": make_rules(count)}
        assert validate_definition(definition) == [], "benchmark rules must be valid"
        started = time.perf_counter()
        policy_set = PolicySet.build(1, compile_rules(definition, policy_slug="bench"))
        compile_ms = (time.perf_counter() - started) * 1000
        for request in requests[:2000]:  # warm-up
            decide(request, policy_set)
        timings = []
        effects: dict[str, int] = {}
        for request in requests:
            t0 = time.perf_counter_ns()
            decision = decide(request, policy_set)
            timings.append((time.perf_counter_ns() - t0) / 1000)
            effects[decision.effect] = effects.get(decision.effect, 0) + 1
        results.append(
            {
                "rules": count,
                "p50_us": statistics.median(timings),
                "p99_us": pct(timings, 0.99),
                "compile_ms": compile_ms,
                "effects": effects,
            }
        )
    return results


# ---------------------------------------------------------------- (b) inside a real run --


def child_check(samples: int) -> dict:
    setup_django(migrate=True)
    from agents.services.tools import tool_create
    from controlplane import context
    from controlplane.tenancy.services import tenant_create
    from policies.decision import PolicyRequest
    from policies.services import policy_create
    from runs.events import emit
    from runs.execution.policy_guard import StepPolicy
    from runs.execution.step_context import StepContext, definition_of
    from runs.models import StepRun
    from runs.services import run_start
    from runs.workflow_services import workflow_create

    with context.system_context("bench"):
        tenant = tenant_create(slug="bench", name="Bench")
    with context.system_context("bench", tenant=tenant):
        tool_create(tenant=tenant, slug="tool-1", name="Tool", kind="builtin", builtin="calculator")
        # the rules name these, and a policy may name only what the tenant has
        from agents.models import Agent, ProviderConnection, Tool

        Tool.objects.for_tenant(tenant).bulk_create(
            Tool(tenant=tenant, slug=f"tool-{i}", name="Tool", kind="builtin", builtin="calculator")
            for i in range(TOOLS)
            if i != 1
        )
        Agent.objects.for_tenant(tenant).bulk_create(
            Agent(tenant=tenant, slug=f"agent-{i}", name="Agent", kind="llm") for i in range(AGENTS)
        )
        ProviderConnection.objects.for_tenant(tenant).create(
            tenant=tenant,
            slug="bench",
            name="Bench",
            kind="simulated",
            models=[{"name": f"model-{i}"} for i in range(10)],
        )
        workflow = workflow_create(
            tenant=tenant,
            slug="one",
            name="one",
            definition={
                "input_schema": {"type": "object"},
                "example_input": {},
                "steps": [
                    {"id": "s", "type": "tool", "tool": "tool-1", "arguments": {"expression": "1"}}
                ],
            },
        )
    results = {}
    for label, rules in (("default policy only", None), ("1,000 rules", make_rules(1000))):
        with context.system_context("bench", tenant=tenant):
            if rules is not None:
                # allow-only, so every check stores one decision and no audit row (a refusal
                # adds one audit row: measured separately below)
                for rule in rules:
                    rule["effect"] = "allow"
                policy_create(
                    tenant=tenant, slug="bench", name="bench", definition={"rules": rules}
                )
            run, _ = run_start(tenant=tenant, workflow=workflow, input={})
        tenant.refresh_from_db()
        run.refresh_from_db()
        run.tenant = tenant
        step = StepRun.objects.unscoped().filter(run=run).first()
        ctx = StepContext(
            run=run,
            step=step,
            step_def=definition_of(run).step("s"),
            definition=definition_of(run),
            run_context={},
            deadline=None,
            emit=lambda type, payload, also=None, run=run, step=step: emit(
                run=run, type=type, step_key=step.step_key, payload=payload, also=also
            ),
            check_cancel=lambda: None,
            next_call_index=lambda: 0,
            save_state=lambda state: None,
        )
        # not destructive: the default policy would (rightly) stop to ask for an approval
        requests = [
            PolicyRequest(**{**r.__dict__, "tenant_id": tenant.pk, "risk": "write"})
            for r in make_requests(samples)
        ]
        with context.system_context("bench", tenant=tenant):
            policy = StepPolicy(ctx)
            for request in requests[:200]:
                policy.check(request)
            timings = []
            for request in requests:
                t0 = time.perf_counter_ns()
                policy.check(request)
                timings.append((time.perf_counter_ns() - t0) / 1e6)
        results[label] = {"p50_ms": statistics.median(timings), "p99_ms": pct(timings, 0.99)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--skip-database", action="store_true")
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_check(2000)))
        return
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    latency = decision_latency(args.samples)
    checks = None
    if not args.skip_database:
        import psycopg

        admin = "postgresql://postgres@127.0.0.1:5432/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS cp_bench_policy WITH (FORCE)")
            conn.execute("CREATE DATABASE cp_bench_policy")
        with tempfile.TemporaryDirectory() as data_dir:
            env = {
                **os.environ,
                "DATABASE_URL": PG,
                "REDIS_URL": REDIS,
                "SECRET_KEY": SECRET,
                "SECRETS_ENCRYPTION_KEYS": FERNET,
                "CONTROLPLANE_DATA_DIR": data_dir,
                "LOG_LEVEL": "WARNING",
            }
            out = subprocess.run(
                [sys.executable, __file__, "--child"],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:
                raise SystemExit(f"check benchmark failed:\n{out.stderr[-4000:]}")
            checks = json.loads(out.stdout.strip().splitlines()[-1])
    print("| Benchmark | Target | Measured |")
    print("|---|---|---|")
    for row in latency:
        target = "≤ 50 µs / ≤ 200 µs" if row["rules"] == 1000 else "—"
        print(
            f"| policy: decision latency, {row['rules']:,} rules (p50 / p99, no DB write) "
            f"| {target} | {row['p50_us']:.1f} µs / {row['p99_us']:.1f} µs |"
        )
    if checks:
        for label, row in checks.items():
            print(
                f"| policy: added cost of the check to a tool call in a run, {label} "
                f"(p50 / p99, PostgreSQL, incl. the stored decision and its event) | — "
                f"| {row['p50_ms']:.2f} ms / {row['p99_ms']:.2f} ms |"
            )
    print(json.dumps({"latency": latency, "checks": checks}), file=sys.stderr)


if __name__ == "__main__":
    main()
