"""Live-update benchmark (not a test): commit -> websocket message latency, 50 concurrent runs.

A real ``manage.py serve`` (daphne) in production mode (PostgreSQL, Redis channel layer)
serves one websocket per run (``/ws/t/bench/runs/<id>/``, as a run's page opens it) and one
runs-list socket (``/ws/t/bench/runs/``), all signed in as a viewer, from a client process.
Emitter processes play the workers: each appends events to its share of the runs with
``runs.events.emit`` in a transaction of its own and notes the time of the commit (an
``on_commit`` hook registered before the event's publish). Latency is the time the client
read the message minus that commit time (one machine, one clock). Half the events end a step,
so the runs list gets a ``run.updated`` for them.

Usage: .venv/bin/python bench/live.py [--runs 50] [--events 40] [--rate 2] [--emitters 2]
Needs PostgreSQL and Redis on 127.0.0.1 (as `make test`); it uses its own database
(cp_bench_live) and a channel prefix of its own on Redis db 13.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench_common import FERNET, ROOT, SECRET, pct, setup_django

PG = os.environ.get("BENCH_LIVE_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cp_bench_live")
REDIS = os.environ.get("BENCH_LIVE_REDIS_URL", "redis://127.0.0.1:6379/13")
TENANT = "bench"


# ------------------------------------------------------------------------ Django children --


def child_seed(runs: int) -> dict:
    """The tenant, a viewer signed in (its session cookie) and ``runs`` queued runs."""
    setup_django(migrate=False)
    from unittest import mock

    from django.test import Client

    from agents.services.tools import tool_create
    from controlplane import context
    from controlplane.tenancy.choices import Role
    from controlplane.tenancy.services import membership_add, tenant_create, user_create
    from runs.execution import progress
    from runs.services import run_start
    from runs.workflow_services import workflow_create

    with context.system_context("bench"):
        tenant = tenant_create(slug=TENANT, name="Bench")
        user = user_create(username="watcher")
    with context.system_context("bench", tenant=tenant):
        membership_add(tenant=tenant, user=user, role=Role.VIEWER)
        tool_create(
            tenant=tenant, slug="noop", name="No-op", kind="builtin", builtin="json_extract"
        )
        workflow = workflow_create(
            tenant=tenant,
            slug="live",
            name="live",
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
                    for i in range(10)
                ],
            },
        )
        with mock.patch.object(progress, "dispatch"):  # the emitters play the workers
            ids = [run_start(tenant=tenant, workflow=workflow, input={})[0].pk for _ in range(runs)]
    client = Client()
    client.force_login(user)
    return {"runs": ids, "cookie": f"sessionid={client.cookies['sessionid'].value}"}


def child_emit(run_ids: list[int], events: int, rate: float) -> dict:
    """``events`` events for each of ``run_ids``, ``rate`` per run per second; commit times."""
    setup_django(migrate=False)
    from channels.layers import get_channel_layer
    from django.db import transaction

    from runs.events import emit
    from runs.models import Run

    runs = list(Run.objects.unscoped().select_related("tenant").filter(pk__in=run_ids))
    stamps: dict[str, float] = {}
    published: dict[str, float] = {}  # when the run group's message left for Redis
    layer = get_channel_layer()
    group_send = layer.group_send

    sent = [0]

    async def timed_group_send(group: str, message: dict) -> None:
        await group_send(group, message)
        sent[0] += 1
        if message.get("kind") == "run.event" and ".run." in group:
            published[f"{message['data']['run']}:{message['seq']}"] = time.time()

    layer.group_send = timed_group_send
    interval = 1.0 / rate
    started = time.monotonic()
    for i in range(events):
        for run in runs:
            stamp: list[float] = []
            with transaction.atomic():
                transaction.on_commit(lambda stamp=stamp: stamp.append(time.time()))
                kind = "step.succeeded" if i % 2 else "step.started"
                event = emit(run=run, type=kind, step_key=f"s{i // 2 % 10}", payload={"i": i})
            stamps[f"{run.pk}:{event.seq}"] = stamp[0]
        behind = started + (i + 1) * interval - time.monotonic()
        if behind > 0:
            time.sleep(behind)
    # the publisher's queue drains before the process ends: per event its run's and its
    # tenant's group, and the runs group for half of them
    expected = len(runs) * (2 * events + events // 2)
    deadline = time.monotonic() + 60
    while sent[0] < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"stamps": stamps, "published": published}


# ---------------------------------------------------------------- websocket client child --


class Socket:
    """The smallest RFC 6455 client this needs: connect, read text messages (no deflate)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, path: str, cookie: str) -> Socket:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n"
                f"Cookie: {cookie}\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        status = await reader.readline()
        if b" 101 " not in status:
            raise ConnectionError(f"{path}: {status!r}")
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        return cls(reader, writer)

    async def receive(self) -> tuple[float, str]:
        """The next text message and the time its last byte was read."""
        parts: list[bytes] = []
        while True:
            head = await self.reader.readexactly(2)
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                length = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            data = await self.reader.readexactly(length)
            received = time.time()
            if opcode == 0x8:
                raise ConnectionError(f"closed: {data[:2].hex()}")
            if opcode in (0x9, 0xA):  # ping, pong: a client frame must be masked
                mask = os.urandom(4)
                body = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
                self.writer.write(bytes([0x8A, 0x80 | len(body)]) + mask + body)
                continue
            parts.append(data)
            if head[0] & 0x80:
                return received, b"".join(parts).decode()

    def close(self) -> None:
        self.writer.close()


async def _clients(port: int, cookie: str, run_ids: list[int], events: int) -> dict:
    run_sockets = [await Socket.open(port, f"/ws/t/{TENANT}/runs/{i}/", cookie) for i in run_ids]
    list_socket = await Socket.open(port, f"/ws/t/{TENANT}/runs/", cookie)
    for sock in [*run_sockets, list_socket]:
        _, text = await sock.receive()
        assert json.loads(text)["kind"].endswith(".synced"), text
    print("ready", flush=True)
    receipts: dict[str, float] = {}
    updates: dict[str, float] = {}
    duplicates = 0

    async def follow(sock: Socket, into: dict[str, float], count: int) -> None:
        nonlocal duplicates
        while count:
            received, text = await sock.receive()
            message = json.loads(text)
            key = f"{message['data']['run']}:{message['seq']}"
            duplicates += key in into
            into[key] = received
            count -= 1

    tasks = [follow(s, receipts, events) for s in run_sockets]
    tasks.append(follow(list_socket, updates, len(run_ids) * (events // 2)))
    with contextlib.suppress(TimeoutError):  # what never came counts as lost
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30 + events * 2)
    for sock in [*run_sockets, list_socket]:
        sock.close()
    return {"receipts": receipts, "updates": updates, "duplicates": duplicates}


def child_clients(port: int, cookie: str, run_ids: list[int], events: int) -> dict:
    return asyncio.run(_clients(port, cookie, run_ids, events))


# -------------------------------------------------------------------------------- parent --


def _env(data_dir: str) -> dict:
    env = {
        **os.environ,
        "DATABASE_URL": PG,
        "REDIS_URL": REDIS,
        "CHANNEL_PREFIX": f"bench-live-{os.getpid()}",
        "CONTROLPLANE_DATA_DIR": data_dir,
        "SECRET_KEY": SECRET,
        "SECRETS_ENCRYPTION_KEYS": FERNET,
        "LOG_LEVEL": "WARNING",
        "DEBUG": "false",
        "CELERY_QUEUE": "bench-live",
    }
    env.pop("TEST_DATABASE_NAME", None)
    return env


def _child(args: list[str], env: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, *args], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"{args[:2]} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _reset_postgres() -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS cp_bench_live WITH (FORCE)")
        conn.execute("CREATE DATABASE cp_bench_live")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(env: dict, port: int, log) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), "--no-worker"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("the server did not answer /healthz")


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--events", type=int, default=40, help="events per run")
    parser.add_argument("--rate", type=float, default=2.0, help="events per run per second")
    parser.add_argument("--emitters", type=int, default=2, help="emitting processes (workers)")
    parser.add_argument("--child", choices=["seed", "emit", "clients"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--cookie")
    parser.add_argument("--ids", default="")
    args = parser.parse_args()
    ids = [int(i) for i in args.ids.split(",") if i]
    if args.child == "seed":
        print(json.dumps(child_seed(args.runs)))
        return
    if args.child == "emit":
        print(json.dumps(child_emit(ids, args.events, args.rate)))
        return
    if args.child == "clients":
        print(json.dumps(child_clients(args.port, args.cookie, ids, args.events)))
        return

    _reset_postgres()
    with tempfile.TemporaryDirectory() as data_dir:
        env = _env(data_dir)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=ROOT, check=True
        )
        seeded = _child(["--child", "seed", "--runs", str(args.runs)], env)
        run_ids: list[int] = seeded["runs"]
        port = _free_port()
        log_path = Path(tempfile.gettempdir()) / "bench-live-server.log"
        log = log_path.open("w")
        server = _serve(env, port, log)
        try:
            clients = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "clients",
                    "--port",
                    str(port),
                    "--cookie",
                    seeded["cookie"],
                    "--ids",
                    ",".join(map(str, run_ids)),
                    "--events",
                    str(args.events),
                ],
                env=env,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            if clients.stdout.readline().strip() != "ready":
                raise SystemExit("the websocket clients did not connect")
            server_cpu = _cpu_seconds(server.pid)
            shares = [run_ids[i :: args.emitters] for i in range(args.emitters)]
            emitters = [
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        "emit",
                        "--ids",
                        ",".join(map(str, share)),
                        "--events",
                        str(args.events),
                        "--rate",
                        str(args.rate),
                    ],
                    env=env,
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for share in shares
                if share
            ]
            stamps: dict[str, float] = {}
            published: dict[str, float] = {}
            for emitter in emitters:
                out, _ = emitter.communicate(timeout=600)
                if emitter.returncode != 0:
                    raise SystemExit("an emitter failed")
                result = json.loads(out.strip().splitlines()[-1])
                stamps.update(result["stamps"])
                published.update(result["published"])
            out, _ = clients.communicate(timeout=600)
            server_cpu = _cpu_seconds(server.pid) - server_cpu
            if clients.returncode != 0:
                raise SystemExit(f"the websocket clients failed; the server's log: {log_path}")
            received = json.loads(out.strip().splitlines()[-1])
        finally:
            _stop(server)
            log.close()

    def latencies(receipts: dict[str, float]) -> list[float]:
        return [(receipts[k] - stamps[k]) * 1000 for k in receipts if k in stamps]

    events = latencies(received["receipts"])
    publishing = [(published[k] - stamps[k]) * 1000 for k in published if k in stamps]
    updates = latencies(received["updates"])
    expected_updates = len(run_ids) * (args.events // 2)
    lost = len(stamps) - len(received["receipts"])
    total_s = args.events / args.rate
    print(
        f"{len(run_ids)} runs x {args.events} events at {args.rate:g}/s per run "
        f"({len(run_ids) * args.rate:.0f} events/s for {total_s:.0f} s), "
        f"{len(emitters)} emitting processes; lost {lost}, "
        f"list updates lost {expected_updates - len(updates)}, "
        f"duplicates {received['duplicates']}"
    )
    delivered = len(received["receipts"]) + len(received["updates"])
    print(
        f"server (daphne) CPU: {server_cpu:.1f} s for {delivered} messages "
        f"({server_cpu / max(delivered, 1) * 1000:.2f} ms each); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    if publishing:
        print(
            f"of which commit -> published to Redis by the emitter: p50 "
            f"{statistics.median(publishing):.1f} ms, p99 {pct(publishing, 0.99):.1f} ms"
        )
    print("| Benchmark | Target | Measured |")
    print("|---|---|---|")
    print(
        f"| live: commit -> run websocket message, {len(run_ids)} concurrent runs "
        f"(p50 / p99, {len(events)} events) | ≤ 30 ms / ≤ 150 ms "
        f"| {statistics.median(events):.1f} ms / {pct(events, 0.99):.1f} ms |"
    )
    if updates:
        print(
            f"| live: commit -> runs list update (p50 / p99, {len(updates)} updates) "
            f"| ≤ 30 ms / ≤ 150 ms "
            f"| {statistics.median(updates):.1f} ms / {pct(updates, 0.99):.1f} ms |"
        )
    print(
        json.dumps(
            {
                "events": {
                    "p50_ms": statistics.median(events),
                    "p99_ms": pct(events, 0.99),
                    "max_ms": max(events),
                    "samples": len(events),
                    "lost": lost,
                },
                "list_updates": {
                    "p50_ms": statistics.median(updates) if updates else None,
                    "p99_ms": pct(updates, 0.99) if updates else None,
                    "samples": len(updates),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
