"""What every benchmark script shares: the repository root, the fixed test secrets, the
percentile they report, and Django's start in a child process.

The scripts run as ``.venv/bin/python bench/<name>.py``, so this module is imported as
``bench_common`` (the script's folder is first on ``sys.path``).
"""

from __future__ import annotations

import os
import sys
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
