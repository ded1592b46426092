"""Strict environment parsing: a bad value stops start-up and says what to write instead.

The start-up tests run ``django.setup()`` in a subprocess with a controlled
environment (nothing inherited but PATH/HOME/locale), so what is checked is the
real settings module as a deployment would load it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from controlplane.env import Env

REPO = Path(__file__).resolve().parent.parent
VALID_FERNET = Fernet.generate_key().decode()
VALID_SECRET_KEY = "k" * 10 + "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV"  # 64
PRODUCTION = {
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/controlplane",
    "REDIS_URL": "redis://127.0.0.1:6379/15",
    "SECRET_KEY": VALID_SECRET_KEY,
    "SECRETS_ENCRYPTION_KEYS": VALID_FERNET,
}
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


def controlled_env(data_dir: Path, values: dict[str, str | None]) -> dict[str, str]:
    """Only what Python needs plus ``values`` (a None value leaves the variable unset)."""
    env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    env["DJANGO_SETTINGS_MODULE"] = "controlplane.settings"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["CONTROLPLANE_DATA_DIR"] = str(data_dir)
    env.update({name: value for name, value in values.items() if value is not None})
    return env


def run_python(code: str, data_dir: Path, values: dict[str, str | None]):
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=controlled_env(data_dir, values),
        capture_output=True,
        text=True,
        timeout=120,
    )


def start(data_dir: Path, **values: str | None):
    """Load the settings as a process would at start-up."""
    return run_python(
        "import django; django.setup(); from django.conf import settings; print(settings.MODE)",
        data_dir,
        values,
    )


def production(**changes: str | None) -> dict[str, str | None]:
    return {**PRODUCTION, **changes}


def assert_refused(result, *expected: str) -> str:
    """Start-up failed with an ImproperlyConfigured whose message contains ``expected``."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert lines, "no error message at all"
    message = lines[-1]
    assert message.startswith("django.core.exceptions.ImproperlyConfigured: "), result.stderr
    for text in expected:
        assert text in message, (text, message)
    return message


# -- start-up through the real settings module -------------------------------------------


def test_valid_production_environment_starts(tmp_path):
    # The baseline the refusals below modify: with it, start-up succeeds.
    result = start(tmp_path, **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "production"


BAD_VALUES = {
    "debug-not-boolean": (
        {"DEBUG": "maybe"},
        ["DEBUG='maybe' is not a boolean", "true, false, 1, 0, yes, no, on, off"],
    ),
    "database-url-mysql": (
        {"DATABASE_URL": "mysql://x"},
        ["DATABASE_URL is not a valid URL", "postgres://", "postgresql://", "sqlite://"],
    ),
    "database-url-without-redis-url": (
        {"REDIS_URL": None},
        ["REDIS_URL is not set", "set both DATABASE_URL and REDIS_URL", "or neither"],
    ),
    "redis-url-without-database-url": (
        {"DATABASE_URL": None},
        ["DATABASE_URL is not set", "set both DATABASE_URL and REDIS_URL", "or neither"],
    ),
    "redis-url-not-a-url": (
        {"REDIS_URL": "notaurl"},
        ["REDIS_URL is not a valid URL", "redis://", "rediss://"],
    ),
    "production-without-secret-key": (
        {"SECRET_KEY": None},
        ["SECRET_KEY is required in production mode", "at least 50 characters"],
    ),
    "secret-key-too-short": (
        {"SECRET_KEY": "s3cr3t-but-only-thirty-five-chars!!"},
        ["SECRET_KEY is too short", "at least 50"],
    ),
    "production-without-encryption-keys": (
        {"SECRETS_ENCRYPTION_KEYS": None},
        ["SECRETS_ENCRYPTION_KEYS is required in production mode", "Fernet keys"],
    ),
    "encryption-key-not-fernet": (
        {"SECRETS_ENCRYPTION_KEYS": f"{VALID_FERNET},not-a-fernet-key"},
        ["SECRETS_ENCRYPTION_KEYS item 2 is not a Fernet key", "url-safe base64", "44 characters"],
    ),
    "allowed-hosts-empty-item": (
        {"ALLOWED_HOSTS": "a.example.com,,b.example.com"},
        ["ALLOWED_HOSTS=", "has an empty item", "comma-separated list"],
    ),
    "csrf-origin-without-scheme": (
        {"CSRF_TRUSTED_ORIGINS": "https://ok.example.com,control.example.com"},
        [
            "CSRF_TRUSTED_ORIGINS item 'control.example.com' is not an origin",
            "https://control.example.com",
        ],
    ),
    "log-level-unknown": (
        {"LOG_LEVEL": "LOUD"},
        ["LOG_LEVEL='LOUD' is not one of", "DEBUG, INFO, WARNING, ERROR"],
    ),
    "session-cookie-age-not-integer": (
        {"SESSION_COOKIE_AGE": "abc"},
        ["SESSION_COOKIE_AGE='abc' is not an integer"],
    ),
    "session-cookie-age-below-minimum": (
        {"SESSION_COOKIE_AGE": "10"},
        ["SESSION_COOKIE_AGE=10 is below the minimum of 60"],
    ),
    "https-not-boolean": (
        {"HTTPS": "sometimes"},
        ["HTTPS='sometimes' is not a boolean"],
    ),
}


@pytest.mark.parametrize(("changes", "expected"), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_value_stops_start_up_with_a_message(tmp_path, changes, expected):
    assert_refused(start(tmp_path, **production(**changes)), *expected)


def test_bad_value_stops_embedded_start_up_too(tmp_path):
    # No DATABASE_URL/REDIS_URL: the embedded mode parses as strictly.
    assert_refused(start(tmp_path, DEBUG="maybe"), "DEBUG='maybe' is not a boolean")


def test_refusals_do_not_echo_secrets(tmp_path):
    password = "hunter2-do-not-log"
    message = assert_refused(
        start(tmp_path, **production(DATABASE_URL=f"postgress://app:{password}@db/cp")),
        "DATABASE_URL is not a valid URL",
    )
    assert password not in message
    short_key = "short-secret-key-value-0123456789ab"
    result = start(tmp_path, **production(SECRET_KEY=short_key))
    assert_refused(result, "SECRET_KEY is too short")
    assert short_key not in result.stderr


# -- embedded mode ---------------------------------------------------------------------

PROBE = """
import hashlib, json
import django
django.setup()
from django.conf import settings
from django.db import connection
from controlplane.celery import app
with connection.cursor() as cursor:
    cursor.execute("PRAGMA journal_mode")
    journal_mode = cursor.fetchone()[0]
print(json.dumps({
    "mode": settings.MODE,
    "engine": settings.DATABASES["default"]["ENGINE"],
    "database": str(settings.DATABASES["default"]["NAME"]),
    "journal_mode": journal_mode,
    "broker": app.conf.broker_url,
    "polling_interval": app.conf.broker_transport_options.get("polling_interval"),
    "channel_layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "cache": settings.CACHES["default"]["BACKEND"],
    "secret_key": hashlib.sha256(settings.SECRET_KEY.encode()).hexdigest(),
    "secret_key_length": len(settings.SECRET_KEY),
    "encryption_keys": hashlib.sha256(
        ",".join(settings.SECRETS_ENCRYPTION_KEYS).encode()).hexdigest(),
}))
"""


def probe_embedded(data_dir: Path) -> dict:
    result = run_python(PROBE, data_dir, {})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_embedded_mode_uses_sqlite_wal_memory_broker_and_in_memory_layer(tmp_path):
    data_dir = tmp_path / "data"
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=REPO,
        env=controlled_env(data_dir, {}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert migrate.returncode == 0, migrate.stderr

    first = probe_embedded(data_dir)
    assert first["mode"] == "embedded"
    assert first["engine"] == "django.db.backends.sqlite3"
    assert Path(first["database"]) == data_dir / "controlplane.sqlite3"
    assert first["journal_mode"] == "wal"
    assert first["broker"].startswith("memory://")  # kombu's in-process transport
    assert first["polling_interval"] is not None and first["polling_interval"] < 0.1
    assert first["channel_layer"] == "channels.layers.InMemoryChannelLayer"
    assert first["cache"] == "django.core.cache.backends.locmem.LocMemCache"

    # WAL is recorded in the database file itself, not only set per Django connection.
    with sqlite3.connect(data_dir / "controlplane.sqlite3") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
    assert "tenancy_tenant" in tables  # migrate really ran against this file

    # The generated SECRET_KEY (and encryption key) survive a restart, kept private.
    secret_file = data_dir / "secret_key"
    assert secret_file.exists()
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert first["secret_key_length"] >= 50
    assert (
        first["secret_key"] == hashlib.sha256(secret_file.read_text().strip().encode()).hexdigest()
    )
    second = probe_embedded(data_dir)
    assert second["secret_key"] == first["secret_key"]
    assert second["encryption_keys"] == first["encryption_keys"]

    # ... and are generated, not a constant: another data directory gets other keys.
    other = probe_embedded(tmp_path / "other")
    assert other["secret_key"] != first["secret_key"]
    assert other["encryption_keys"] != first["encryption_keys"]


# -- controlplane.env.Env on a plain dict ----------------------------------------------


def refused(message_start: str):
    return pytest.raises(ImproperlyConfigured, match="^" + re.escape(message_start))


def test_unset_and_blank_values_fall_back_to_the_default():
    env = Env({"BLANK": "   ", "EMPTY": ""})
    assert env.raw("MISSING") is None
    assert env.raw("BLANK") is None
    assert not env.is_set("EMPTY")
    assert env.str("BLANK", "fallback") == "fallback"
    assert env.bool("MISSING", True) is True
    assert env.int("EMPTY", 7) == 7
    assert env.list("MISSING", ["a"]) == ["a"]
    assert env.choice("MISSING", "INFO", ["INFO"]) == "INFO"
    assert env.url("MISSING", ["redis"]) is None
    assert env.origins("MISSING", []) == []


def test_str_strips_and_required_names_the_variable():
    env = Env({"NAME": "  value  "})
    assert env.is_set("NAME")
    assert env.str("NAME") == "value"
    with refused("OTHER is required"):
        env.str("OTHER", required=True)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("TRUE", True),
        ("yes", True),
        ("On", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
    ],
)
def test_bool_accepts_the_usual_spellings(raw, expected):
    assert Env({"FLAG": raw}).bool("FLAG", not expected) is expected


@pytest.mark.parametrize("raw", ["maybe", "2", "y", "enabled"])
def test_bool_refuses_anything_else(raw):
    with refused(f"FLAG='{raw}' is not a boolean: use one of"):
        Env({"FLAG": raw}).bool("FLAG", False)


def test_int_parses_and_enforces_bounds():
    env = Env({"N": " 42 ", "BAD": "4.2", "LOW": "-1", "HIGH": "1000"})
    assert env.int("N", 0) == 42
    assert env.int("N", 0, minimum=42, maximum=42) == 42
    with refused("BAD='4.2' is not an integer"):
        env.int("BAD", 0)
    with refused("LOW=-1 is below the minimum of 0"):
        env.int("LOW", 0, minimum=0)
    with refused("HIGH=1000 is above the maximum of 999"):
        env.int("HIGH", 0, maximum=999)


def test_list_splits_trims_and_refuses_empty_items():
    env = Env({"HOSTS": " a.example.com , b.example.com ", "BAD": "a.example.com,", "ONE": "x"})
    assert env.list("HOSTS", []) == ["a.example.com", "b.example.com"]
    assert env.list("ONE", []) == ["x"]
    with refused("BAD='a.example.com,' has an empty item"):
        env.list("BAD", [])


def test_list_default_is_a_copy():
    default = ["a"]
    result = Env({}).list("MISSING", default)
    result.append("b")
    assert default == ["a"]


def test_choice_is_exact():
    env = Env({"LEVEL": "WARNING", "LOWER": "warning"})
    assert env.choice("LEVEL", "INFO", ["INFO", "WARNING"]) == "WARNING"
    with refused("LOWER='warning' is not one of: INFO, WARNING"):
        env.choice("LOWER", "INFO", ["INFO", "WARNING"])


@pytest.mark.parametrize(
    "value",
    ["postgres://u:p@db:5432/cp", "postgresql://db/cp", "sqlite:////tmp/x.sqlite3"],
)
def test_url_accepts_listed_schemes(value):
    assert Env({"DATABASE_URL": value}).url("DATABASE_URL", ["postgres", "postgresql", "sqlite"])


@pytest.mark.parametrize("value", ["mysql://db/cp", "notaurl", "db:5432", "postgres://", "//db/x"])
def test_url_refuses_other_schemes_and_hostless_urls(value):
    with pytest.raises(ImproperlyConfigured) as excinfo:
        Env({"DATABASE_URL": value}).url("DATABASE_URL", ["postgres", "sqlite"])
    message = str(excinfo.value)
    assert message.startswith("DATABASE_URL is not a valid URL")
    assert "postgres://, sqlite://" in message


def test_origins_need_scheme_and_host():
    env = Env(
        {
            "GOOD": "https://a.example.com,http://127.0.0.1:8000",
            "NO_SCHEME": "a.example.com",
            "FTP": "ftp://a.example.com",
            "NO_HOST": "https://",
        }
    )
    assert env.origins("GOOD", []) == ["https://a.example.com", "http://127.0.0.1:8000"]
    for name, item in [
        ("NO_SCHEME", "a.example.com"),
        ("FTP", "ftp://a.example.com"),
        ("NO_HOST", "https://"),
    ]:
        with refused(f"{name} item '{item}' is not an origin"):
            env.origins(name, [])


def test_env_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("CP_TEST_ENV_PROBE", "on")
    assert Env().bool("CP_TEST_ENV_PROBE", False) is True


POOL_OF = (
    "import sys; sys.argv = {argv!r}; import django; django.setup(); "
    "from django.conf import settings; "
    "print(settings.DATABASES['default']['OPTIONS'].get('pool', {{}}).get('max_size', 0))"
)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/venv/bin/celery", "-A", "controlplane", "worker", "--concurrency", "2"], "8"),
        (["/x/celery/__main__.py", "-A", "controlplane", "worker", "-Q", "q"], "8"),
        (["manage.py", "serve", "--port", "8000"], "0"),
        (["/venv/bin/celery", "-A", "controlplane", "beat"], "0"),
    ],
)
def test_worker_processes_pool_their_connections_and_the_web_does_not(tmp_path, argv, expected):
    """The worker keeps hundreds of steps on a bounded pool; the web opens a connection per
    request so that a database outage answers 503 at once instead of waiting for a slot."""
    result = run_python(POOL_OF.format(argv=argv), tmp_path, production())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_db_pool_size_is_explicit_when_set(tmp_path):
    argv = ["manage.py", "serve"]
    result = run_python(POOL_OF.format(argv=argv), tmp_path, production(DB_POOL_SIZE="3"))
    assert result.stdout.strip() == "3", result.stderr
