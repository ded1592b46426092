"""Serve the dashboard, API and websockets (daphne); in embedded mode also the worker and beat."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Serve HTTP and websockets with daphne. In embedded mode (DATABASE_URL and REDIS_URL "
        "unset) a Celery worker and beat run in threads of this process; in production mode "
        "start them separately (celery -A controlplane worker / beat)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--proxy-headers",
            action="store_true",
            help="trust X-Forwarded-For/Proto (only behind your own proxy)",
        )
        parser.add_argument(
            "--no-worker",
            action="store_true",
            help="embedded mode only: do not start the in-process worker",
        )

    def handle(self, *args, host, port, no_worker, proxy_headers, **options):
        import signal

        from daphne.cli import CommandLineInterface

        # Started in the background (make run's production mode), SIGINT may arrive ignored;
        # restore it so Ctrl-C stops the server as it stops the worker and beat.
        signal.signal(signal.SIGINT, signal.default_int_handler)

        if settings.EMBEDDED and not no_worker:
            from controlplane.embedded import start_embedded_worker

            start_embedded_worker()
            self.stdout.write("Embedded worker and beat started in this process.")
        self.stdout.write(f"Serving on http://{host}:{port}/ ({settings.MODE} mode)")
        argv = ["-b", host, "-p", str(port)]
        if proxy_headers:
            argv.append("--proxy-headers")
        CommandLineInterface().run([*argv, "controlplane.asgi:application"])
