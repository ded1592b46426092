"""Fault injection for the reliability tests: a private Redis, a cuttable PostgreSQL proxy,
a loopback ledger standing in for a third-party API, and the real processes (workers, beat,
``manage.py serve``) pointed at them.

Nothing here touches the shared PostgreSQL or Redis servers: a Redis "restart" kills and
restarts a private ``redis-server`` on a port of its own, and a PostgreSQL "outage" cuts a
TCP proxy that only the processes under test connect through.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

from controlplane.celery import app as celery_app
from tests.processes import ROOT, Worker, free_port, test_database_url

ARTIFACTS = ROOT / "test-artifacts"
REDIS_SERVER = os.environ.get("REDIS_SERVER_PATH", "/usr/bin/redis-server")
FIGURES_PATH = Path(settings.DATA_DIR) / "reliability.json"


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll ``predicate`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


# Private Redis --------------------------------------------------------------------------------


class RedisServer:
    """A throw-away ``redis-server`` (no persistence) on a free port of its own."""

    def __init__(self) -> None:
        self.port = free_port()
        self.log = ARTIFACTS / f"redis-{self.port}.log"
        self.process: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    REDIS_SERVER,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def answers() -> bool:
            try:
                return bool(self.client().ping())
            except Exception as exc:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"redis-server exited: {self.log.read_text()[-2000:]}"
                    ) from exc
                return False

        wait_until(answers, 20, f"redis-server on port {self.port}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=20)

    def restart(self, down_seconds: float = 0.0) -> None:
        """Kill (SIGKILL: no goodbye to clients, every queued message lost) and start again
        on the same port."""
        self.kill()
        time.sleep(down_seconds)
        self.start()

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


# PostgreSQL proxy -------------------------------------------------------------------------


class TcpProxy:
    """A TCP proxy in front of a server (PostgreSQL); ``down()`` drops every proxied
    connection and refuses new ones until ``up()``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._accepting = threading.Event()
        self._thread: threading.Thread | None = None
        self.accepted = 0
        self.up()

    def url_for(self, database_url: str) -> str:
        """``database_url`` with its host and port replaced by the proxy's."""
        parts = urlsplit(database_url)
        credentials = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit(parts._replace(netloc=f"{credentials}127.0.0.1:{self.port}"))

    def up(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        self._accepting.set()
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Refuse new connections (the port is closed) and cut every open one."""
        self._accepting.clear()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.down()

    def _accept(self, listener: socket.socket) -> None:
        while self._accepting.is_set():
            ready, _, _ = select.select([listener], [], [], 0.1)
            if not ready or not self._accepting.is_set():
                continue
            try:
                client, _ = listener.accept()
            except OSError:
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if not self._accepting.is_set():
                    client.close()
                    upstream.close()
                    continue
                self._sockets.update((client, upstream))
                self.accepted += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with self._lock:
            self._sockets.discard(source)
            self._sockets.discard(sink)


# Loopback ledger ------------------------------------------------------------------------------


def pid_of_client(client_port: int, server_port: int) -> int | None:
    """The process owning the local TCP socket 127.0.0.1:client_port -> :server_port."""
    inode = None
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            cols = line.split()
            local, remote = cols[1], cols[2]
            if (
                int(local.rsplit(":", 1)[1], 16) == client_port
                and int(remote.rsplit(":", 1)[1], 16) == server_port
            ):
                inode = cols[9]
                break
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return int(pid)
            except OSError:
                continue
    return None


def parent_pid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(p) for p in children.read().split()]
    except OSError:
        return []


class _QuietServer(ThreadingHTTPServer):
    # the standard library listens with a backlog of 5: hundreds of steps calling at once
    # had connections dropped by the kernel and timed out, which is the test's server, not
    # the product, failing
    request_queue_size = 1024

    def handle_error(self, request, client_address) -> None:
        pass  # clients killed mid-request are the point of these tests


@dataclass
class LedgerEntry:
    path: str
    key: str
    body: Any
    at: float
    client_port: int


class Ledger:
    """A loopback JSON API standing in for a third party: every request is written to the
    ledger with its ``Idempotency-Key``. ``delays[path]`` slows a path down; ``hooks[path]``
    is called (with the entry) before answering and may return False to drop the request
    without an answer."""

    def __init__(self) -> None:
        self.entries: list[LedgerEntry] = []
        self.cut_off = 0  # requests whose sender died before the body arrived
        self.delays: dict[str, float] = {}
        self.hooks: dict[str, Any] = {}
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if len(raw) < length:  # the caller died while sending: no request to serve
                    with outer.lock:
                        outer.cut_off += 1
                    self.close_connection = True
                    return
                entry = LedgerEntry(
                    path=self.path.split("?", 1)[0],
                    key=self.headers.get("Idempotency-Key", ""),
                    body=json.loads(raw) if raw else None,
                    at=time.monotonic(),
                    client_port=self.client_address[1],
                )
                with outer.lock:
                    outer.entries.append(entry)
                hook = outer.hooks.get(entry.path)
                if hook is not None and hook(entry) is False:
                    self.close_connection = True
                    return
                delay = outer.delays.get(entry.path, 0)
                if delay:
                    time.sleep(delay)
                data = json.dumps({"ok": True, "key": entry.key}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"http://{self.host}{path}"

    def calls(self, path: str | None = None) -> list[LedgerEntry]:
        with self.lock:
            return [e for e in self.entries if path is None or e.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# Processes ------------------------------------------------------------------------------------


class Beat:
    """A real ``celery beat``: sends ``runs.sweep`` every SWEEP_INTERVAL_SECONDS."""

    def __init__(self, env: dict[str, str], schedule: Path) -> None:
        self.log = ARTIFACTS / f"beat-{uuid.uuid4().hex[:6]}.log"
        self._logfile = self.log.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "controlplane",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(schedule),
            ],
            cwd=ROOT,
            env=env,
            stdout=self._logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self, fast: bool = False) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL if fast else signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)
        self._logfile.close()


class Server:
    """``manage.py serve`` (daphne, production mode) against the test database."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = ARTIFACTS / f"serve-{self.port}.log"
        self._logfile = self.log.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            cwd=ROOT,
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdout=self._logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        def answers() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=2) as response:
                    return response.status == 200
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return False

        wait_until(answers, timeout, "the server to answer /healthz", interval=0.2)

    def stop(self, fast: bool = False) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL if fast else signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)
        self._logfile.close()


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    started: float
    finished: float

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str,
    url: str,
    token: str = "",
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 15,
) -> Response:
    """One HTTP request; the response whatever its status (connection errors raise)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Response(
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read(),
                started,
                time.monotonic(),
            )
    except urllib.error.HTTPError as error:
        return Response(
            error.code,
            {k.lower(): v for k, v in error.headers.items()},
            error.read(),
            started,
            time.monotonic(),
        )


@dataclass
class Cluster:
    """Everything a fault test runs against: a private Redis (broker, cache, channel layer),
    a queue of its own, and the workers, beat and server started for the test.

    The test process's Celery app is pointed at the private Redis and queue, so runs started
    here are dispatched to the workers started here.
    """

    tmp: Path
    lease_seconds: int = 3
    sweep_interval_seconds: int = 1
    redispatch_after_seconds: int = 2
    redis: RedisServer = field(init=False)
    queue: str = field(init=False)
    workers: list[Worker] = field(init=False, default_factory=list)
    beats: list[Beat] = field(init=False, default_factory=list)
    servers: list[Server] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.redis = RedisServer()
        self.queue = f"rel-{uuid.uuid4().hex[:8]}"
        self._previous = (celery_app.conf.broker_url, celery_app.conf.task_default_queue)
        self._point_app(self.redis.url, self.queue)

    @staticmethod
    def _point_app(broker_url: str, queue: str) -> None:
        celery_app.conf.broker_url = broker_url
        celery_app.conf.task_default_queue = queue
        celery_app._pool = None  # the connection pools are made again for the new broker
        amqp = celery_app.__dict__.get("amqp")
        if amqp is not None:
            amqp._producer_pool = None

    def env(self, **overrides: str) -> dict[str, str]:
        """Environment of a process under test (string values)."""
        return {
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "REDIS_URL": self.redis.url,
            "CELERY_QUEUE": self.queue,
            "DEBUG": "false",
            "STEP_LEASE_SECONDS": str(self.lease_seconds),
            "SWEEP_INTERVAL_SECONDS": str(self.sweep_interval_seconds),
            "SWEEP_REDISPATCH_AFTER_SECONDS": str(self.redispatch_after_seconds),
            "WORKER_HEARTBEAT_SECONDS": "1",
            **overrides,
        }

    def start_worker(self, concurrency: int = 2, wait: bool = True, **env: str) -> Worker:
        worker = Worker(self.queue, concurrency=concurrency, extra_env=self.env(**env))
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def start_beat(self, **env: str) -> Beat:
        beat = Beat(self.env(**env), self.tmp / f"beat-{len(self.beats)}.db")
        self.beats.append(beat)
        return beat

    def start_server(self, **env: str) -> Server:
        server = Server(self.env(**env))
        self.servers.append(server)
        server.wait_ready()
        return server

    def queue_length(self) -> int:
        return int(self.redis.client().llen(self.queue))

    def close(self) -> None:
        # SIGKILL: nothing they hold matters any more, and a warm shutdown takes seconds
        for process in [*self.servers, *self.beats]:
            with contextlib.suppress(Exception):  # teardown goes on: stop the next one too
                process.stop(fast=True)
        for worker in self.workers:
            with contextlib.suppress(Exception):
                worker.kill()
                worker.stop()
        self.redis.stop()
        pool = celery_app._pool
        self._point_app(*self._previous)
        if pool is not None:
            pool.force_close_all()


def record_figures(name: str, figures: dict[str, Any]) -> None:
    """Merge one test's figures into var/test/reliability.json (the README cites them)."""
    FIGURES_PATH.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(FIGURES_PATH.read_text())
    except (OSError, ValueError):
        data = {}
    data[name] = figures
    FIGURES_PATH.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
