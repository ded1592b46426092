"""What every benchmark script shares: the repository root, the fixed test secrets, the
percentile they report, and Django's start in a child process.

The scripts run as ``.venv/bin/python bench/<name>.py``, so this module is imported as
``bench_common`` (the script's folder is first on ``sys.path``).
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz0123456789"
FERNET = "lN3oN3YVmG0qQx2d4d3H0cW0m8yS6uQ1tK4fP7rZ9aE="


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def setup_django(*, migrate: bool) -> None:
    """Start Django from the repository (in a benchmark's child), migrating first if asked."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    import django  # not at the top: the parent process never starts Django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)


# ---------------------------------------------------------- the product in subprocesses --
# Shared by bench/concurrency.py and bench/api.py: the product started as `make run` starts
# it (the Makefile's web/worker/beat recipes), the scripted model provider, a seeded tenant.

BIN = Path(sys.executable).parent  # the venv's bin: the Makefile's $(BIN)
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
OBSERVER = "bench-observer"  # application_name of the benches' own database reads


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_command(target: str, **values: str) -> list[str]:
    """The first recipe line of a Makefile target as argv, its $(VARS) filled in.

    So the benchmarks start the web, worker and beat with exactly the flags `make run` and
    docker-compose use, whatever the Makefile says today.
    """
    import re
    import shlex

    text = (ROOT / "Makefile").read_text()
    found = re.search(rf"^{re.escape(target)}:[^\n]*\n\t([^\n]+)", text, re.MULTILINE)
    if found is None:
        raise SystemExit(f"The Makefile has no recipe for {target!r}.")
    values = {"BIN": str(BIN), **values}

    def fill(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            raise SystemExit(
                f"Makefile target {target!r} uses $({name}); the bench cannot fill it."
            )
        return values[name]

    return shlex.split(re.sub(r"\$\((\w+)\)", fill, found.group(1)))


def product_env(data_dir: str, database_url: str | None, redis_url: str | None) -> dict:
    """The environment of the product's processes: production mode with both URLs, else
    embedded (SQLite in ``data_dir``). The loopback provider is let through egress."""
    env = {
        **os.environ,
        "CONTROLPLANE_DATA_DIR": data_dir,
        "EGRESS_ALLOWED_NETWORKS": "127.0.0.0/8",
        "DEBUG": "false",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),  # this checkout's code, before the venv's editable install
    }
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_QUEUE", "SECRET_KEY"):
        env.pop(name, None)
    env.pop("SECRETS_ENCRYPTION_KEYS", None)
    if database_url and redis_url:
        env.update(
            {
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                "SECRET_KEY": SECRET,
                "SECRETS_ENCRYPTION_KEYS": FERNET,
            }
        )
    return env


def reset_databases(database: str, redis_url: str) -> None:
    """Drop and create the bench's PostgreSQL database; empty its Redis db."""
    import psycopg
    import redis

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')
    redis.Redis.from_url(redis_url).flushdb()


class Processes:
    """The benchmark's subprocesses, each in a session of its own, all stopped by
    ``stop_all`` (called on exit, Ctrl-C and SIGTERM) with their children (prefork pools)."""

    def __init__(self, log_dir: str) -> None:
        import atexit
        import signal

        self.log_dir = Path(log_dir)
        self.started: list[tuple[str, object]] = []
        atexit.register(self.stop_all)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds into stop_all

    def start(self, name: str, argv: list[str], env: dict, *, pipe: bool = False):
        """Start ``argv`` in the repository; its output goes to ``<log_dir>/<name>.log``
        (or a pipe, to read what it prints)."""
        import subprocess

        log = self.log_dir / f"{name}.log"
        out = subprocess.PIPE if pipe else log.open("ab")
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT if not pipe else log.open("ab"),
            start_new_session=True,
            text=pipe,
        )
        self.started.append((name, process))
        return process

    def stop(self, process, timeout: float = 20) -> None:
        """SIGTERM to the process group, SIGKILL after ``timeout`` seconds."""
        import signal
        import subprocess

        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        except ProcessLookupError:
            pass

    def stop_all(self) -> None:
        """Stop every process started, the last first."""
        while self.started:
            _, process = self.started.pop()
            self.stop(process)

    def log_tail(self, name: str, lines: int = 30) -> str:
        """The end of a process's log (to say why it failed)."""
        path = self.log_dir / f"{name}.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )


def start_fake_provider(processes: Processes, latency: float):
    """The scripted OpenAI-compatible server (bench/fake_provider.py) in a subprocess;
    returns its root URL."""
    process = processes.start(
        "provider",
        [
            sys.executable,
            str(ROOT / "bench" / "fake_provider.py"),
            "--port",
            "0",
            "--latency",
            str(latency),
        ],
        dict(os.environ),
        pipe=True,
    )
    port = process.stdout.readline().strip()
    if not port.isdigit():
        raise SystemExit(f"the fake provider did not start: {processes.log_tail('provider')}")
    return f"http://127.0.0.1:{port}"


def wait_http(url: str, timeout: float, *, status: int = 200) -> bool:
    """Poll ``url`` until it answers ``status``; False after ``timeout`` seconds."""
    import time
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == status:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False


def run_manage(env: dict, *args: str) -> str:
    """``manage.py <args>`` with the product's environment; its stdout."""
    import subprocess

    out = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(
            f"manage.py {' '.join(args)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
        )
    return out.stdout


def seed(env: dict, provider_url: str) -> dict:
    """Seed the bench tenant in a child process (see ``_child_seed``); returns its answer."""
    import json
    import subprocess

    out = subprocess.run(
        [sys.executable, str(Path(__file__)), "seed", provider_url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"seeding failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


class CpuMeter:
    """CPU seconds spent, by part: each started process group (web, worker with its pool
    children, beat, provider), the PostgreSQL backends of ``database``, this process, and
    everything else on the machine (other users of the shared cores). Linux /proc only.

    ``sample()`` now and then keeps the last figure of each process, so one that exits
    between samples still counts up to its last sample.
    """

    def __init__(self, processes: Processes, database: str | None) -> None:
        self.processes = processes
        self.database = database
        self.tick = os.sysconf("SC_CLK_TCK")
        self.first: dict[int, float] = {}
        self.last: dict[int, tuple[str, float]] = {}
        self.machine_first = self._machine()
        self.self_first = sum(os.times()[:2])
        self.sample(first=True)

    def _machine(self) -> tuple[float, float]:
        with open("/proc/stat") as stat:
            fields = [float(v) for v in stat.readline().split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    def _parts(self) -> dict[int, tuple[str, float]]:
        groups = {process.pid: name for name, process in self.processes.started}
        tag = f" {self.database} " if self.database else None
        found = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    raw = stat.read()
                fields = raw[raw.rindex(")") + 2 :].split()
                seconds = (int(fields[11]) + int(fields[12])) / self.tick
                name = groups.get(int(fields[2]))  # the process group (session leader)
                if name is None and tag:
                    with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline:
                        if tag in cmdline.read().replace(b"\0", b" ").decode(errors="replace"):
                            name = "postgres"
            except (OSError, ValueError, IndexError):
                continue
            if name is not None:
                found[int(entry.name)] = (name, seconds)
        return found

    def sample(self, first: bool = False) -> None:
        """Read every part's CPU time now."""
        parts = self._parts()
        if first:
            self.first = {pid: seconds for pid, (_, seconds) in parts.items()}
        self.last.update(parts)

    def totals(self) -> dict[str, float]:
        """CPU seconds per part since the meter started (sample first)."""
        self.sample()
        out: dict[str, float] = {}
        for pid, (name, seconds) in self.last.items():
            out[name] = out.get(name, 0.0) + seconds - self.first.get(pid, 0.0)
        out["bench client"] = sum(os.times()[:2]) - self.self_first
        busy, total = self._machine()
        busy_first, total_first = self.machine_first
        cores = os.cpu_count() or 1
        out["machine busy"] = (busy - busy_first) / self.tick
        out["others"] = out["machine busy"] - sum(v for k, v in out.items() if k != "machine busy")
        out["machine capacity"] = (total - total_first) / self.tick  # cores x seconds
        out["cores"] = cores
        return out


class Product:
    """The product in one mode, seeded, with the fake provider; ``stop`` ends it all."""

    def __init__(
        self,
        mode: str,
        workdir: str,
        worker_cmd: str | None = None,
        *,
        database: str,
        redis_url: str,
    ) -> None:
        """``database``/``redis_url``: the bench's own (production mode; reset at start)."""
        self.mode = mode
        self.database = database
        self.redis_url = redis_url
        self.workdir = Path(workdir) / mode
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.processes = Processes(str(self.workdir))
        self.worker_cmd = worker_cmd
        production = mode == "production"
        pg = f"postgres://postgres@127.0.0.1:5432/{database}"
        self.env = product_env(
            str(self.workdir), pg if production else None, redis_url if production else None
        )
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.mode == "production":
            reset_databases(self.database, self.redis_url)
        self.provider = start_fake_provider(self.processes, 0.01)
        run_manage(self.env, "migrate", "--noinput", "-v0")  # as `make migrate`
        self.seeded = seed(self.env, self.provider)
        web = make_command("web", HOST="127.0.0.1", PORT=str(self.port))
        if self.mode == "production":
            worker = make_command("worker")
            if self.worker_cmd:
                worker = shlex.split(self.worker_cmd)
                if not os.path.isabs(worker[0]) and (BIN / worker[0]).exists():
                    worker[0] = str(BIN / worker[0])
            beat = [
                a.replace("var/", f"{self.workdir}/") for a in make_command("beat")
            ]  # its schedule file in the bench's temp dir, not the checkout's var/
            self.worker_argv = worker
            self.processes.start("worker", worker, self.env)
            self.processes.start("beat", beat, self.env)
        self.processes.start("web", web, self.env)
        if not wait_http(f"{self.base}/healthz", 60):
            raise SystemExit(f"the web process did not answer:\n{self.processes.log_tail('web')}")
        if self.mode == "production" and not wait_http(f"{self.base}/readyz", 60):
            print("warning: /readyz is not 200 after 60 s (no worker heartbeat?)", file=sys.stderr)

    def stop(self) -> None:
        self.processes.stop_all()

    def db(self) -> Database:
        if self.mode == "production":
            return Database(self.env["DATABASE_URL"], self.seeded["tables"])
        return Database(str(self.workdir / "controlplane.sqlite3"), self.seeded["tables"])


class Database:
    """Reads run and step states straight from the product's database (PostgreSQL, or the
    embedded SQLite file read-only: WAL lets it read beside the writer)."""

    def __init__(self, target: str, tables: dict) -> None:
        self.tables = tables
        self.sqlite = not target.startswith("postgres")
        if self.sqlite:
            self.conn = sqlite3.connect(
                f"file:{target}?mode=ro", uri=True, timeout=10, check_same_thread=False
            )
            self.param = "?"
        else:
            import psycopg

            # named, so the connection counts of bench/concurrency.py leave it out
            self.conn = psycopg.connect(target, autocommit=True, application_name=OBSERVER)
            self.param = "%s"
        self.lock = threading.Lock()

    def rows(self, sql: str, *args) -> list[tuple]:
        with self.lock:
            cur = self.conn.cursor()
            cur.execute(sql.replace("%s", self.param), args)
            return cur.fetchall()

    def max_run_id(self) -> int:
        return self.rows(f"SELECT COALESCE(MAX(id), 0) FROM {self.tables['run']}")[0][0]

    def states(self, since: int) -> tuple[dict, dict]:
        """Runs and steps (of runs after ``since``) by status."""
        runs = self.rows(
            f"SELECT status, COUNT(*) FROM {self.tables['run']} WHERE id > %s GROUP BY status",
            since,
        )
        steps = self.rows(
            f"SELECT status, COUNT(*) FROM {self.tables['step']} WHERE run_id > %s GROUP BY status",
            since,
        )
        return dict(runs), dict(steps)

    def last_finished(self, since: int) -> float | None:
        """The epoch time of the last run's ``finished_at``."""
        value = self.rows(
            f"SELECT MAX(finished_at) FROM {self.tables['run']} WHERE id > %s", since
        )[0][0]
        if value is None:
            return None
        if isinstance(value, str):  # SQLite: naive UTC text
            value = datetime.fromisoformat(value).replace(tzinfo=UTC)
        return value.timestamp()

    def close(self) -> None:
        self.conn.close()


BENCH_TENANT = "bench"
BENCH_AGENT = "bench-llm"


def _child_seed(provider_url: str) -> dict:
    """Tenant ``bench`` with an owner and a write API token; an OpenAI-compatible provider
    at ``provider_url`` (its max_concurrency, where the field exists, set high); the llm
    agent ``bench-llm``; workflows ``llm-5`` (5 agent steps in a row), ``noop`` (one
    built-in tool step) and ``gated`` (an approval, then a tool step)."""
    setup_django(migrate=False)
    from django.core.exceptions import FieldDoesNotExist

    from agents.models import ProviderConnection
    from agents.services.agents import agent_create
    from agents.services.providers import provider_create
    from agents.services.tools import tool_create
    from controlplane import context
    from controlplane.api.services import api_token_create
    from controlplane.tenancy.choices import Role
    from controlplane.tenancy.services import membership_add, tenant_create, user_create
    from runs.approvals.models import ApprovalRequest
    from runs.models import Run, StepRun

    try:
        from runs.workflow_services import workflow_create
    except ImportError:  # a checkout from before issue 13 moved it (the "before" figures)
        from runs.services import workflow_create

    with context.system_context("bench"):
        tenant = tenant_create(slug=BENCH_TENANT, name="Bench")
        user = user_create(username="bench-owner")
    with context.system_context("bench", tenant=tenant):
        membership_add(tenant=tenant, user=user, role=Role.OWNER)
        token = api_token_create(
            tenant=tenant, user=user, name="bench", scope="write", expires_in_days=1
        ).plaintext
        provider = provider_create(
            tenant=tenant,
            slug="bench-openai",
            name="Bench provider",
            kind="openai",
            base_url=f"{provider_url}/v1",
            models=[{"name": "fake-1", "input_per_mtok": 1, "output_per_mtok": 2}],
        )
        try:
            ProviderConnection._meta.get_field("max_concurrency")
        except FieldDoesNotExist:
            max_concurrency = None
        else:
            max_concurrency = 1000
            ProviderConnection.objects.filter(pk=provider.pk).update(max_concurrency=1000)
        agent_create(
            tenant=tenant,
            slug=BENCH_AGENT,
            name="Bench LLM",
            kind="llm",
            config={
                "provider": provider.slug,
                "model": "fake-1",
                "system_prompt": "Answer in one word.",
                "max_tokens": 16,
            },
        )
        tool_create(
            tenant=tenant, slug="noop", name="No-op", kind="builtin", builtin="json_extract"
        )
        noop = {"type": "tool", "tool": "noop", "arguments": {"document": {"a": 1}, "path": "a"}}
        steps = [{"id": "s0", "type": "agent", "agent": BENCH_AGENT, "input": "{{ input }}"}]
        steps += [
            {
                "id": f"s{i}",
                "type": "agent",
                "agent": BENCH_AGENT,
                "input": f"{{{{ steps.s{i - 1}.output }}}}",
            }
            for i in range(1, 5)
        ]
        workflows = {
            "llm-5": steps,
            "noop": [{"id": "only", **noop}],
            "gated": [{"id": "gate", "type": "approval", "title": "Go?"}, {"id": "after", **noop}],
        }
        for slug, workflow_steps in workflows.items():
            workflow_create(
                tenant=tenant,
                slug=slug,
                name=slug,
                definition={"input_schema": {}, "example_input": {}, "steps": workflow_steps},
            )
    return {
        "token": token,
        "tenant": BENCH_TENANT,
        "max_concurrency": max_concurrency,
        "tables": {
            "run": Run._meta.db_table,
            "step": StepRun._meta.db_table,
            "approval": ApprovalRequest._meta.db_table,
        },
    }


if __name__ == "__main__":  # the seeding child: python bench/bench_common.py seed <provider url>
    import json

    if sys.argv[1:2] != ["seed"]:
        raise SystemExit("usage: bench_common.py seed <provider url>")
    print(json.dumps(_child_seed(sys.argv[2])))
