"""Settings for both modes of the control plane.

Embedded (DATABASE_URL and REDIS_URL unset): SQLite in WAL mode, Celery on the
memory transport executed by a worker thread inside the web process, the
in-memory channel layer, a local-memory cache. Production (both set):
PostgreSQL, Redis as broker, channel layer and cache. The code path is the same;
only these values differ.
"""

from __future__ import annotations

import secrets
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from controlplane.env import Env

env = Env()
BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env.str("CONTROLPLANE_DATA_DIR", str(BASE_DIR / "var")))

DATABASE_URL = env.url("DATABASE_URL", ["postgres", "postgresql", "sqlite"])
REDIS_URL = env.url("REDIS_URL", ["redis", "rediss"])
if bool(DATABASE_URL) != bool(REDIS_URL):
    missing = "REDIS_URL" if DATABASE_URL else "DATABASE_URL"
    raise ImproperlyConfigured(
        f"{missing} is not set: set both DATABASE_URL and REDIS_URL for production mode, "
        "or neither for the embedded mode (SQLite, in-process worker)."
    )
EMBEDDED = DATABASE_URL is None
MODE = "embedded" if EMBEDDED else "production"


def _persisted_secret(filename: str, make: callable) -> str:
    """Embedded mode only: generate a secret once and keep it under DATA_DIR."""
    path = DATA_DIR / filename
    if path.exists():
        return path.read_text().strip()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    value = make()
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


DEBUG = env.bool("DEBUG", False)
SECRET_KEY = env.str("SECRET_KEY")
if SECRET_KEY is None:
    if not EMBEDDED:
        raise ImproperlyConfigured(
            "SECRET_KEY is required in production mode: set it to a random string of at "
            "least 50 characters (python -c 'import secrets; print(secrets.token_urlsafe(64))')."
        )
    SECRET_KEY = _persisted_secret("secret_key", lambda: secrets.token_urlsafe(64))
elif len(SECRET_KEY) < 50:  # what `check --deploy` (security.W009) requires
    raise ImproperlyConfigured("SECRET_KEY is too short: use at least 50 random characters.")

# Fernet keys for secrets at rest; the first encrypts, all decrypt (rotation).
_secret_keys = env.list("SECRETS_ENCRYPTION_KEYS", [])
# Embedded mode without SECRETS_ENCRYPTION_KEYS: the keys live in DATA_DIR/secrets_key
# (comma-separated, newest first), which `rotate_secrets` rewrites and the running
# server reads again when a secret does not decrypt (controlplane.crypto).
SECRETS_KEY_FILE = None
if not _secret_keys:
    if not EMBEDDED:
        raise ImproperlyConfigured(
            "SECRETS_ENCRYPTION_KEYS is required in production mode: a comma-separated list of "
            "Fernet keys, newest first (python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())')."
        )
    _stored = _persisted_secret("secrets_key", lambda: Fernet.generate_key().decode())
    _secret_keys = [k.strip() for k in _stored.split(",") if k.strip()]
    SECRETS_KEY_FILE = DATA_DIR / "secrets_key"
for _index, _key in enumerate(_secret_keys):
    try:
        Fernet(_key)
    except (ValueError, TypeError):
        raise ImproperlyConfigured(
            f"SECRETS_ENCRYPTION_KEYS item {_index + 1} is not a Fernet key: each key is 32 "
            "url-safe base64-encoded bytes (44 characters ending in '=')."
        ) from None
SECRETS_ENCRYPTION_KEYS = _secret_keys

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.origins("CSRF_TRUSTED_ORIGINS", [])
HTTPS = env.bool("HTTPS", False)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env.int("HSTS_SECONDS", 31536000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("TRUST_X_FORWARDED_PROTO", False) else None
)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# No inline or third-party script anywhere (confirmations and live updates are static
# files); inline styles stay allowed for htmx's indicators, pygal's SVG and Redoc.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "worker-src": ["'self'", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
PERMISSIONS_POLICY_HEADER = "camera=(), microphone=(), geolocation=(), payment=()"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", 60 * 60 * 12, minimum=60)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "drf_standardized_errors",
    "guardian",
    "django_htmx",
    "axes",
    "controlplane.tenancy",
    "controlplane.rbac",
    "controlplane.audit",
    "controlplane.api",
    "controlplane.realtime",
    "controlplane.dashboard",
    "agents",
    "policies",
    "runs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "controlplane.middleware.RequestContextMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "controlplane.middleware.DatabaseUnavailableMiddleware",
    "controlplane.middleware.QueryStringMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "controlplane.urls"
ASGI_APPLICATION = "controlplane.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "controlplane.dashboard.context.dashboard",
            ],
        },
    },
]

if EMBEDDED:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "controlplane.sqlite3",
            "OPTIONS": {
                # WAL lets the web thread read while the worker thread writes;
                # IMMEDIATE takes the write lock up front so two writers queue
                # on busy_timeout instead of failing with "database is locked".
                "init_command": (
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
                ),
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }
else:
    # A bounded pool per worker process (psycopg_pool): a thread holds a connection only
    # while it queries; steps waiting on I/O hold none (controlplane.aio.release_db). The
    # web process defaults to no pool (a connection per request, as Django does): during a
    # database outage it must answer 503 at once, not wait for a pool slot that cannot
    # come. 0 turns pooling off (then DB_CONN_MAX_AGE applies).
    _CELERY_WORKER = "worker" in sys.argv[1:5] and "celery" in " ".join(sys.argv[:3])
    DB_POOL_SIZE = env.int("DB_POOL_SIZE", 8 if _CELERY_WORKER else 0, minimum=0)
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL,
            conn_max_age=0 if DB_POOL_SIZE else env.int("DB_CONN_MAX_AGE", 0, minimum=0),
        )
    }
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env.int(
        "DB_CONNECT_TIMEOUT", 5, minimum=1
    )
    if DB_POOL_SIZE:
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": 1,
            "max_size": DB_POOL_SIZE,
            # a thread waits this long for a free connection, then the request/step fails
            "timeout": env.int("DB_POOL_TIMEOUT", 30, minimum=1),
        }
DATABASES["default"]["TEST"] = (
    {"NAME": env.str("TEST_DATABASE_NAME")} if env.is_set("TEST_DATABASE_NAME") else {}
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if EMBEDDED:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", "cp"),
        }
    }
    # Redis pub/sub: a message is pushed to the subscribed web processes at once, where the
    # list-based layer needs several round trips per message (bench/live.py: its latency
    # misses the targets with 50 runs). Delivery is at most once, as with any layer: a run's
    # websocket fills a gap from the database by sequence number.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": env.str("CHANNEL_PREFIX", "cp")},
        }
    }

# Celery: JSON only, late acks, one message at a time per worker process.
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {"polling_interval": 0.005} if EMBEDDED else {"visibility_timeout": 3600}
)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_QUEUE", "celery")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
SWEEP_INTERVAL_SECONDS = env.int("SWEEP_INTERVAL_SECONDS", 5, minimum=1)
CELERY_BEAT_SCHEDULE: dict = {
    "runs-sweep": {"task": "runs.sweep", "schedule": float(SWEEP_INTERVAL_SECONDS)},
}
# The run engine: a claimed step's lease (renewed while it runs), the default step timeout,
# how long a queued step may sit unclaimed before the sweeper re-dispatches it, and the
# default run deadline.
# Executables a tenant may register as a stdio MCP server. A stdio server runs on this host,
# so an open list would let any tenant admin run commands here: nothing by default; "*"
# allows any (a single-team installation).
MCP_STDIO_COMMANDS = env.list("MCP_STDIO_COMMANDS", [])
# Outbound calls (providers, HTTP tools, http agents, MCP servers) never reach loopback,
# link-local, private or other non-public addresses unless the network is listed here
# (comma-separated CIDRs, e.g. "10.20.0.0/16,127.0.0.1/32" for a local model server).
EGRESS_ALLOWED_NETWORKS = env.networks("EGRESS_ALLOWED_NETWORKS", [])
STEP_LEASE_SECONDS = env.int("STEP_LEASE_SECONDS", 30, minimum=2)
STEP_DEFAULT_TIMEOUT_SECONDS = env.int("STEP_DEFAULT_TIMEOUT_SECONDS", 300, minimum=1)
SWEEP_REDISPATCH_AFTER_SECONDS = env.int("SWEEP_REDISPATCH_AFTER_SECONDS", 15, minimum=1)
# Steps one worker process runs at once; past it the worker takes no more messages. A step
# waiting on I/O costs a parked thread and a coroutine, no database connection.
STEP_MAX_IN_FLIGHT = env.int("STEP_MAX_IN_FLIGHT", 200, minimum=1)
# On a warm shutdown a worker waits this long for its steps in flight to finish.
STEP_DRAIN_SECONDS = env.int("STEP_DRAIN_SECONDS", 10, minimum=0)
# Async SDK clients kept per process (one per provider configuration) and the most HTTP
# connections each may open (the per-provider limit, max_concurrency, is enforced apart).
PROVIDER_CLIENTS_CACHED = env.int("PROVIDER_CLIENTS_CACHED", 64, minimum=1)
PROVIDER_MAX_CONNECTIONS = env.int("PROVIDER_MAX_CONNECTIONS", 1000, minimum=1)
RUN_DEFAULT_DEADLINE_SECONDS = env.int("RUN_DEFAULT_DEADLINE_SECONDS", 24 * 3600, minimum=1)
WORKER_HEARTBEAT_SECONDS = env.int("WORKER_HEARTBEAT_SECONDS", 5, minimum=1)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
LOGIN_URL = "dashboard:login"
LOGIN_REDIRECT_URL = "dashboard:home"
LOGOUT_REDIRECT_URL = "dashboard:login"
GUARDIAN_ANONYMOUS_USER_NAME = None
ANONYMOUS_USER_NAME = None
GUARDIAN_RAISE_403 = False

# Failed logins: after LOGIN_FAILURE_LIMIT failures for one username from one
# address, further attempts are refused for LOGIN_LOCKOUT_MINUTES.
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "controlplane.dashboard.views.login_locked_out"
AXES_VERBOSE = False
AXES_IPWARE_PROXY_COUNT = env.int("PROXY_COUNT", 0, minimum=0) or None

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns when it is missing
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# An empty choice in a dashboard filter reads "Any", not django-filter's "---------".
FILTERS_EMPTY_CHOICE_LABEL = "Any"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "controlplane.api.authentication.BearerTokenAuthentication",
        "controlplane.api.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["controlplane.api.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "controlplane.api.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "controlplane.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "controlplane.api.errors.exception_handler",
    "URL_FORMAT_OVERRIDE": None,
}
# Input limits, for the API, the dashboard's JSON fields and websocket messages: a body over
# MAX_REQUEST_BODY_BYTES answers 413; JSON nested deeper than JSON_MAX_DEPTH levels, or with a
# NUL character in a string, key or query parameter, answers 400.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAX_REQUEST_BODY_BYTES", 2_621_440, minimum=65_536)
JSON_MAX_DEPTH = env.int("JSON_MAX_DEPTH", 64, minimum=8, maximum=500)
DRF_STANDARDIZED_ERRORS = {"ENABLE_IN_DEBUG_FOR_UNHANDLED_EXCEPTIONS": True}
_ERR = "drf_standardized_errors.openapi_serializers"
SPECTACULAR_SETTINGS = {
    "TITLE": "Agent control plane API",
    "DESCRIPTION": (
        "Tenant-scoped REST API of the agent orchestration control plane. Authenticate with "
        "`Authorization: Bearer <token>` (create a token in the dashboard or with "
        "`manage.py create_api_token`). Every 4xx answers with one error shape: "
        '`{"type": ..., "errors": [{"code", "detail", "attr"}]}`.'
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "RegistryStatusEnum": "controlplane.choices.Status.choices",
        "TicketStatusEnum": "agents.choices.TicketStatus.choices",
        "RunStatusEnum": "runs.choices.RunStatus.choices",
        "ApprovalStatusEnum": "runs.approvals.choices.ApprovalStatus.choices",
        "ValidationErrorEnum": f"{_ERR}.ValidationErrorEnum.choices",
        "ClientErrorEnum": f"{_ERR}.ClientErrorEnum.choices",
        "ServerErrorEnum": f"{_ERR}.ServerErrorEnum.choices",
        "ErrorCode401Enum": f"{_ERR}.ErrorCode401Enum.choices",
        "ErrorCode403Enum": f"{_ERR}.ErrorCode403Enum.choices",
        "ErrorCode404Enum": f"{_ERR}.ErrorCode404Enum.choices",
        "ErrorCode405Enum": f"{_ERR}.ErrorCode405Enum.choices",
        "ErrorCode406Enum": f"{_ERR}.ErrorCode406Enum.choices",
        "ErrorCode415Enum": f"{_ERR}.ErrorCode415Enum.choices",
        "ErrorCode429Enum": f"{_ERR}.ErrorCode429Enum.choices",
        "ErrorCode500Enum": f"{_ERR}.ErrorCode500Enum.choices",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_standardized_errors.openapi_hooks.postprocess_schema_enums",
    ],
}

DEMO_PASSWORD = env.str("DEMO_PASSWORD")

# API tokens: last-used time is written at most once per this many seconds.
API_TOKEN_TOUCH_SECONDS = env.int("API_TOKEN_TOUCH_SECONDS", 60, minimum=0)
API_TOKEN_DEFAULT_EXPIRY_DAYS = env.int("API_TOKEN_DEFAULT_EXPIRY_DAYS", 90, minimum=1)

LOG_LEVEL = env.choice("LOG_LEVEL", "INFO", ["DEBUG", "INFO", "WARNING", "ERROR"])
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "controlplane.logfilters.RedactSecretsFilter"}},
    "formatters": {
        "line": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "line", "filters": ["redact"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}
