"""A scripted OpenAI-compatible chat-completions server on loopback that counts concurrency.

One home for benchmarks and tests: ``bench/fake_provider.py`` runs it in a subprocess
(``python bench/fake_provider.py --port 0 --latency 2`` prints its port), tests start it in a
thread (``with FakeOpenAI(latency=0.5) as server: ... server.base_url ...``) and async code
awaits ``start()`` in its own loop.

Written on asyncio streams with HTTP/1.1 keep-alive, so 500+ concurrent connections cost
one coroutine each, not a thread. It answers:

- ``POST .../chat/completions``: a valid ChatCompletion (``usage`` included) after
  ``latency`` seconds; ``content`` is the answer (``json_content`` when the request asks for
  a ``response_format``);
- ``GET .../models``: the configured model names;
- ``GET /stats``: ``{"current", "peak", "total", "aborted", "connections",
  "peak_connections", "by_prefix": {prefix: {"current", "peak", "total", "aborted"}}}``;
- ``POST /reset``: zeroes the counters (peaks become the current values);
- ``POST /config``: ``{"latency", "content", "json_content", "latency_by_prefix"}``, any
  subset.

A path prefix before ``/v1`` (``/p/<name>/v1``, see ``base_url(prefix=...)``) is counted
apart, so several providers of one test can share a server and still be told apart.
A request is *in flight* from its last body byte until its answer is written, or until the
client goes away (``aborted``: what a cancelled model call looks like from here).
Requests are not pipelined (no SDK does); a client sending bytes before its answer gets it
and the connection is closed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 411: "Length Required"}


class _Counter:
    """Current, peak, total and aborted requests of one scope."""

    __slots__ = ("aborted", "current", "peak", "total")

    def __init__(self) -> None:
        self.current = self.peak = self.total = self.aborted = 0

    def enter(self) -> None:
        self.current += 1
        self.total += 1
        self.peak = max(self.peak, self.current)

    def reset(self) -> None:
        self.peak = self.current
        self.total = self.aborted = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "current": self.current,
            "peak": self.peak,
            "total": self.total,
            "aborted": self.aborted,
        }


class FakeOpenAI:
    """The server: configure with the constructor or ``configure``, read ``stats()``.

    ``reply`` (in-process only) computes the answer's content from the request body and
    wins over ``content``/``json_content``.
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        content: str = "ok",
        json_content: str = "{}",
        models: list[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        reply: Callable[[dict[str, Any]], str] | None = None,
    ) -> None:
        self.latency = latency
        self.latency_by_prefix: dict[str, float] = {}
        self.content = content
        self.json_content = json_content
        self.models = models or ["fake-1"]
        self.reply = reply
        self.host = host
        self.port = port
        self._requests = _Counter()
        self._by_prefix: dict[str, _Counter] = {}
        self._connections = 0
        self._peak_connections = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # stats() may be read from another thread
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()  # one per open connection
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------- configuration --

    def base_url(self, prefix: str = "") -> str:
        """The provider base URL (ends in ``/v1``); a ``prefix`` is counted apart."""
        return f"http://{self.host}:{self.port}{'/p/' + prefix if prefix else ''}/v1"

    @property
    def url(self) -> str:
        """The server's root URL (``/stats``, ``/reset`` and ``/config`` live there)."""
        return f"http://{self.host}:{self.port}"

    def configure(self, **changes: Any) -> None:
        """Change ``latency``, ``content``, ``json_content`` or ``latency_by_prefix``."""
        for key, value in changes.items():
            if key not in ("latency", "content", "json_content", "latency_by_prefix"):
                raise ValueError(f"unknown setting {key!r}")
            setattr(self, key, value)

    def stats(self) -> dict[str, Any]:
        """The counters now (a copy)."""
        with self._lock:
            return {
                **self._requests.as_dict(),
                "connections": self._connections,
                "peak_connections": self._peak_connections,
                "by_prefix": {k: c.as_dict() for k, c in self._by_prefix.items()},
            }

    def reset(self) -> None:
        """Zero the totals; peaks restart from what is in flight now."""
        with self._lock:
            self._requests.reset()
            for counter in self._by_prefix.values():
                counter.reset()
            self._peak_connections = self._connections

    # ----------------------------------------------------------------------- lifecycle --

    async def start(self) -> None:
        """Listen in the running loop (``port`` is set once this returns)."""
        self._server = await asyncio.start_server(
            self._connection, self.host, self.port, backlog=4096, limit=1 << 20
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    def start_in_thread(self) -> FakeOpenAI:
        """Serve from a daemon thread with a loop of its own; returns once listening."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def close(self) -> None:
        """Stop a server started with ``start_in_thread``."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start_in_thread()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------------- serving --

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        with self._lock:
            self._connections += 1
            self._peak_connections = max(self._peak_connections, self._connections)
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass  # the server is stopping; Python 3.11's streams log a cancelled handler
        finally:
            with self._lock:
                self._connections -= 1
            self._tasks.discard(task)
            writer.close()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        """Serve one request; False when the connection is done."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False  # the client closed an idle keep-alive connection
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, version = [*request_line.split(" ", 2), "", ""][:3]
        headers = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            await self._write(writer, 411, {"error": "send a Content-Length"}, False)
            return False
        length = int(headers.get("content-length") or 0)
        body = await reader.readexactly(length) if length else b""
        path = target.split("?", 1)[0]

        if path.endswith("/chat/completions") and method == "POST":
            prefix = path[: -len("/chat/completions")].removesuffix("/v1")
            answered = await self._chat(reader, writer, prefix, body)
            return answered and keep_alive
        if path.endswith("/models") and method == "GET":
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models
            ]
            status, payload = 200, {"object": "list", "data": data}
        elif path == "/stats":
            status, payload = 200, self.stats()
        elif path == "/reset" and method == "POST":
            self.reset()
            status, payload = 200, self.stats()
        elif path == "/config" and method == "POST":
            try:
                self.configure(**json.loads(body or b"{}"))
            except (ValueError, TypeError) as exc:
                status, payload = 400, {"error": str(exc)}
            else:
                status, payload = 200, {"latency": self.latency, "content": self.content}
        else:
            status, payload = 404, {"error": {"message": f"no route {method} {path}"}}
        await self._write(writer, status, payload, keep_alive)
        return keep_alive

    async def _chat(self, reader, writer, prefix: str, body: bytes) -> bool:
        try:
            request = json.loads(body)
        except ValueError:
            await self._write(writer, 400, {"error": {"message": "body is not JSON"}}, False)
            return False
        with self._lock:
            counter = self._by_prefix.setdefault(prefix, _Counter()) if prefix else None
            self._requests.enter()
            if counter is not None:
                counter.enter()
        try:
            delay = self.latency_by_prefix.get(prefix.removeprefix("/p/"), self.latency)
            waited = await self._wait(reader, delay)
            if waited == "left":
                with self._lock:
                    self._requests.aborted += 1
                    if counter is not None:
                        counter.aborted += 1
                return False
            await self._write(writer, 200, self._completion(request), waited == "waited")
        finally:
            with self._lock:
                self._requests.current -= 1
                if counter is not None:
                    counter.current -= 1
        return waited == "waited"

    @staticmethod
    async def _wait(reader: asyncio.StreamReader, delay: float) -> str:
        """Wait ``delay`` seconds: "waited", or "left" as soon as the client closes the
        connection, or "pipelined" when it sends bytes early (answered, then closed)."""
        if delay <= 0:
            return "waited"
        watcher = asyncio.ensure_future(reader.read(1))
        done, _ = await asyncio.wait({watcher}, timeout=delay)
        if not done:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            return "waited"
        if watcher.exception() is not None or not watcher.result():
            return "left"
        return "pipelined"

    def _completion(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.reply is not None:
            content = self.reply(request)
        elif request.get("response_format"):
            content = self.json_content
        else:
            content = self.content
        prompt = sum(len(str(m.get("content") or "")) for m in request.get("messages") or [])
        prompt_tokens = max(1, prompt // 4)
        completion_tokens = max(1, len(content) // 4)
        return {
            "id": f"chatcmpl-fake-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model") or self.models[0],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, status: int, payload: Any, keep: bool):
        data = json.dumps(payload).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n"
            f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
        )
        writer.write(head.encode() + data)
        await writer.drain()


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM or Ctrl-C; the first line printed is the port."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per completion")
    parser.add_argument("--content", default="ok", help="the completion's text")
    args = parser.parse_args(argv)

    async def serve() -> None:
        server = FakeOpenAI(
            latency=args.latency, content=args.content, host=args.host, port=args.port
        )
        await server.start()
        print(server.port, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
