"""A scriptable loopback HTTP service for engine tests: per-path replies, delays, a ledger."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Loopback:
    """Serve scripted JSON replies on 127.0.0.1; record every request in ``ledger``.

    ``script[path]`` is a list of (status, body, delay_seconds) consumed in order; the last
    entry repeats.
    """

    def __init__(self) -> None:
        self.script: dict[str, list[tuple[int, object, float]]] = {}
        self.ledger: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                with outer.lock:
                    outer.ledger.append(
                        {
                            "path": path,
                            "method": self.command,
                            "body": json.loads(raw) if raw else None,
                            "headers": dict(self.headers),
                        }
                    )
                    entries = outer.script.get(path) or [(404, {"error": "no script"}, 0)]
                    status, body, delay = entries[0] if len(entries) == 1 else entries.pop(0)
                if delay:
                    time.sleep(delay)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _reply

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def url(self, path: str) -> str:
        return f"http://{self.host}{path}"

    def calls(self, path: str) -> list[dict]:
        with self.lock:
            return [entry for entry in self.ledger if entry["path"] == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
