"""Attune settings. Every value that varies by deployment comes from the
environment; README.md has the table of variables."""

import urllib.parse
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from attune.broker import transport_for
from attune.env import env_bool, env_float, env_int, env_list, env_rate, env_str, redis_cluster_url

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("ATTUNE_DATA_DIR", str(BASE_DIR / "var")))

SECRET_KEY = env_str("DJANGO_SECRET_KEY", "attune-insecure-development-key-change-me")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    # Swagger UI's files served from the package, pinned, so /api/docs/
    # works without internet (drf-spectacular's default loads them from a CDN).
    "drf_spectacular_sidecar",
    "django_prometheus",
    "executions",
    "queues",
    "workers",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's and the dashboard's static files from any WSGI
    # server (gunicorn in the docker stack), so no separate file server.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After authentication: the audit trail records the request's user.
    "attune.middleware.AuditRequestMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "attune.urls"
WSGI_APPLICATION = "attune.wsgi.application"

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
            ],
        },
    },
]

# "pgbouncer": DATABASE_URL is a PgBouncer in transaction pooling mode, where
# consecutive transactions of one connection may run on different server
# connections, so nothing may outlive a transaction (docs/scaling.md).
DB_POOLER = env_str("ATTUNE_DB_POOLER", "").strip().lower()
if DB_POOLER not in ("", "pgbouncer"):
    raise ImproperlyConfigured(f"ATTUNE_DB_POOLER must be empty or pgbouncer, got {DB_POOLER!r}")
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'attune.sqlite3'}"),
        # Behind the pooler a connection to it is a local round trip; the
        # pooler keeps the server connections.
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0 if DB_POOLER else 60, minimum=0) or 0,
    )
}
if DB_POOLER:
    # A server-side cursor (QuerySet.iterator()) lives across transactions
    # on one server connection, which transaction pooling does not keep.
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Workers, the web server and the reaper write concurrently; wait for the
    # lock instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
    DATABASES["default"]["OPTIONS"]["init_command"] = "PRAGMA journal_mode=WAL;"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
# Serve straight from the apps' static directories when collectstatic has not
# run (a development checkout); the docker image collects them at build time.
WHITENOISE_USE_FINDERS = True
LOGIN_URL = "/admin/login/"
# A write refused for its missing CSRF token answers JSON under /api/.
CSRF_FAILURE_VIEW = "attune.api_errors.csrf_failure"

# --- Redis and Celery ------------------------------------------------------

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# redis+cluster://host:port[,host:port...] puts the gate, its locks and the
# throttles on a Redis Cluster (docs/scaling.md); checked here so a typo
# stops the process at start.
REDIS_CLUSTER = redis_cluster_url(REDIS_URL, name="REDIS_URL")

# The API's throttling counts requests here: in Redis, so every web process
# counts against the same budget (queues/keys.py lists the keys).
CACHES = {
    "default": {
        "BACKEND": (
            "attune.cache.RedisClusterCache"
            if REDIS_CLUSTER
            else "django.core.cache.backends.redis.RedisCache"
        ),
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": f"{env_str('ATTUNE_REDIS_PREFIX', 'attune')}:cache",
    }
}

if REDIS_CLUSTER and not env_str("CELERY_BROKER_URL", ""):
    raise ImproperlyConfigured(
        "CELERY_BROKER_URL must be set when REDIS_URL is a Redis Cluster: Celery's Redis "
        "transport needs a standalone Redis (redis://...), or use RabbitMQ (amqp://...)"
    )
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
# kombu's Redis transport with one publishing client per connection pool
# instead of a new one per message (attune/broker.py).
CELERY_BROKER_TRANSPORT = transport_for(CELERY_BROKER_URL)
# Redis (redis://, rediss://, sentinel://) or RabbitMQ (amqp://, pyamqp://);
# the two differ in how a message a worker took comes back (docs/scaling.md).
BROKER_IS_REDIS = urllib.parse.urlsplit(CELERY_BROKER_URL).scheme.split("+")[0] in (
    "redis",
    "rediss",
    "sentinel",
)
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", "") or None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# One message at a time per pool process: a prefetched message would sit on
# a busy worker while another is idle, delaying the FIFO head.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# The multiplier alone is not enough: a task is acknowledged when it starts,
# so a worker whose processes are all busy would still take more messages
# and hold them (and lose them if killed, until their leases run out).
# Take a message only when a process is free: on Redis, Celery's
# disable_prefetch; on RabbitMQ (where Celery ignores it), acknowledging a
# task when it ends, so a worker's prefetch window (one per process) holds
# only the messages it is running. RabbitMQ gives a dead worker's unacked
# messages to another at once; the copy of a run that had started is
# skipped (only the current grant starts), one that had not starts there
# without waiting for its lease (docs/scaling.md).
CELERY_WORKER_DISABLE_PREFETCH = BROKER_IS_REDIS
CELERY_TASK_ACKS_LATE = env_bool("CELERY_TASK_ACKS_LATE", not BROKER_IS_REDIS)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # The Redis transport's ack emulation copies every message it hands out
    # into an "unacked" hash and sorted set, and deletes it again at the ack,
    # four writes and a MULTI per message; it would bring a message back
    # after visibility_timeout if its worker died holding it. Tasks are
    # acknowledged as they start, so it covers only the moment between
    # taking a message and starting it, and the gate's slot lease already
    # covers that: a grant whose task never started goes back to the head
    # of its queue when its lease runs out (queues/reaper.py). Off, the
    # broker costs half as much per execution (docs/performance.md).
    "ack_emulation": env_bool("CELERY_BROKER_ACK_EMULATION", False),
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT_SECONDS", 3600, minimum=1),
}
if not BROKER_IS_REDIS:
    # Both are the Redis transport's; RabbitMQ acknowledges for real.
    CELERY_BROKER_TRANSPORT_OPTIONS = {}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fixup closes the database connection after every task
# unless told to reuse it; reconnecting cost more than the task itself.
# Reused connections are still recycled every 2 x this many tasks.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 100, minimum=0)
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {}

# --- Attune ------------------------------------------------------------------

# Concurrency limit used when neither the action nor its pack sets one.
# None means unlimited: executions never wait.
ATTUNE_DEFAULT_CONCURRENCY: int | None = env_int("ATTUNE_DEFAULT_CONCURRENCY", None, minimum=1)
# How long a granted slot stays held without a renewal from its worker.
ATTUNE_LEASE_SECONDS: float = env_float("ATTUNE_LEASE_SECONDS", 30.0, minimum=1.0)
# How often the reaper looks for expired leases, stale requests and queue timeouts.
ATTUNE_REAPER_INTERVAL_SECONDS: float = env_float("ATTUNE_REAPER_INTERVAL_SECONDS", 5.0, minimum=0.1)
# Seconds beyond an action's timeout before Celery kills its process outright.
ATTUNE_HARD_TIMEOUT_GRACE_SECONDS: float = env_float("ATTUNE_HARD_TIMEOUT_GRACE_SECONDS", 10.0, minimum=1.0)
# Prefix of every Redis key the gate owns (see queues/keys.py).
ATTUNE_REDIS_PREFIX = env_str("ATTUNE_REDIS_PREFIX", "attune")
# Whether workers persist the live queue counters into queue_stats (see queues/stats.py).
ATTUNE_STATS_FLUSH_ENABLED: bool = env_bool("ATTUNE_STATS_FLUSH_ENABLED", True)
# The longest a queue_stats row may lag the live counters, in seconds.
ATTUNE_STATS_FLUSH_INTERVAL_SECONDS: float = env_float(
    "ATTUNE_STATS_FLUSH_INTERVAL_SECONDS", 1.0, minimum=0.05
)
# The most groups (queues per parameter value) of one action exported on
# /metrics, busiest first; the rest are summed into group="other".
ATTUNE_METRICS_MAX_GROUPS: int = env_int("ATTUNE_METRICS_MAX_GROUPS", 20, minimum=1) or 20
# Port on which a Celery worker's main process serves /metrics for itself and
# its pool processes (docs/ops-runbook-queues.md); 0 turns the exporter off.
ATTUNE_WORKER_METRICS_PORT: int = env_int("ATTUNE_WORKER_METRICS_PORT", 9808, minimum=0) or 0
# The same for `manage.py reap --loop`, which records lease reclaims and queue timeouts.
ATTUNE_REAPER_METRICS_PORT: int = env_int("ATTUNE_REAPER_METRICS_PORT", 9809, minimum=0) or 0

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "attune.auth.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only, within DATA_UPLOAD_MAX_MEMORY_SIZE (Django's default, 2.5 MB; 413 beyond).
    "DEFAULT_PARSER_CLASSES": ["attune.parsers.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "attune.api_errors.exception_handler",
    # Per user, and per IP for requests without valid credentials (each
    # 401 is counted, attune/api_errors.py, so guessing tokens is slowed).
    "DEFAULT_THROTTLE_CLASSES": [
        "attune.throttling.AnonThrottle",
        "attune.throttling.UserThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_rate("ATTUNE_API_THROTTLE_ANON", "60/minute"),
        "user": env_rate("ATTUNE_API_THROTTLE_USER", "6000/minute"),
    },
    # Behind a proxy (the docker stack's), the client is the last address
    # it appends to X-Forwarded-For.
    "NUM_PROXIES": env_int("ATTUNE_API_NUM_PROXIES", None, minimum=0),
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Attune API",
    "DESCRIPTION": "Actions, executions and per-action FIFO concurrency queues.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Tags by resource (packs, actions, executions, queue-stats), not by "v1".
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    # Read-only fields (ids, refs, timestamps) stay out of the request bodies.
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("ATTUNE_LOG_LEVEL", "INFO")},
}
