"""Django's deployment checklist passes under production settings, and fails without HTTPS."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

REPO = Path(__file__).resolve().parent.parent
# The Makefile's TEST_ENV sets these; the fallbacks are the Makefile's defaults.
DATABASE_URL = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/controlplane")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")


def check_deploy(tmp_path: Path, **values: str | None) -> subprocess.CompletedProcess:
    env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "controlplane.settings",
            "PYTHONDONTWRITEBYTECODE": "1",
            "CONTROLPLANE_DATA_DIR": str(tmp_path / "data"),
            "DATABASE_URL": DATABASE_URL,
            "REDIS_URL": REDIS_URL,
            "DEBUG": "false",
            "HTTPS": "true",
            "SECRET_KEY": secrets.token_urlsafe(48),  # 64 characters
            "SECRETS_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "ALLOWED_HOSTS": "control.example.com",
        }
    )
    for name, value in values.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    assert len(env.get("SECRET_KEY", "x" * 64)) == 64
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_the_deployment_checklist(tmp_path):
    result = check_deploy(tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in result.stdout, output
    assert "security.W" not in output
    assert "WARNINGS" not in output and "ERRORS" not in output


def test_without_https_the_checklist_reports_insecure_cookies(tmp_path):
    result = check_deploy(tmp_path, HTTPS=None)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for warning in (
        "security.W004",  # no HSTS
        "security.W008",  # no SSL redirect
        "security.W012",  # session cookie not secure
        "security.W016",  # CSRF cookie not secure
    ):
        assert warning in output, (warning, output)


def test_debug_in_production_is_reported(tmp_path):
    result = check_deploy(tmp_path, DEBUG="true")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "security.W018" in output, output
