"""Syndarix settings: one module, read from the environment (see `.env.example`).

Zero-setup defaults (SQLite file, database cache, DEBUG on) make `make run` work on a fresh clone;
production sets `DJANGO_DEBUG=false`, `DJANGO_SECRET_KEY`, `DATABASE_URL` (PostgreSQL) and
`REDIS_URL`.
"""

import os
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# `.env` beside manage.py, unless DJANGO_ENV_FILE names another file (empty: none; `make test` reads none, so a
# developer's `.env` never changes what the suite sees). Variables already in the environment win.
_ENV_FILE = os.environ.get("DJANGO_ENV_FILE", str(BASE_DIR / ".env"))
if _ENV_FILE:
    environ.Env.read_env(_ENV_FILE, overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=True)
_DEV_SECRET = "django-insecure-dev-only-secret-key-change-me"
# Empty (`DJANGO_SECRET_KEY=` as in .env.example) counts as unset.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="") or (_DEV_SECRET if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is false.")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "syndarix.apps.SyndarixAdminConfig",  # django.contrib.admin with the Syndarix admin site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "syndarix.apps.ApiTokensConfig",  # django-rest-knox
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "projects",
    "agents",
    "aiservices",
    "buildkit",
]

MIDDLEWARE = [
    # First: counts and times every request (Prometheus, syndarix.metrics).
    "syndarix.metrics.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A lost database or cache raised by any view is a 503 with Retry-After, not a 500 page.
    "syndarix.api.middleware.DependencyOutageMiddleware",
]

ROOT_URLCONF = "syndarix.urls"
WSGI_APPLICATION = "syndarix.wsgi.application"
ASGI_APPLICATION = "syndarix.asgi.application"

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
                "agents.context_processors.agents",
            ],
        },
    },
]

# --- Database: PostgreSQL in production and tests, SQLite as the zero-setup default. ---
# Empty (`DATABASE_URL=` as in .env.example) counts as unset.
_DATABASE_URL = env.str("DATABASE_URL", default="") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
DATABASES = {"default": env.db_url_config(_DATABASE_URL)}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=0))
# PostgreSQL connections come from a pool per process (Django's psycopg pool): at most DATABASE_POOL_MAX_SIZE
# connections per process whatever it runs (a worker holding hundreds of runs, a web process), at least
# DATABASE_POOL_MIN_SIZE kept open, each checked before use. A request waits up to DATABASE_POOL_TIMEOUT seconds for
# one (a lost database answers 503 that fast; the Procfile's worker line waits longer, WORKER_DATABASE_POOL_TIMEOUT,
# as its runs share the pool). DATABASE_POOL_MAX_SIZE=0 turns the pool off (then DATABASE_CONN_MAX_AGE keeps
# connections); with the pool on, Django refuses a persistent connection, so DATABASE_CONN_MAX_AGE must stay 0.
DATABASE_POOL_MIN_SIZE = env.int("DATABASE_POOL_MIN_SIZE", default=1)
DATABASE_POOL_MAX_SIZE = env.int("DATABASE_POOL_MAX_SIZE", default=10)
DATABASE_POOL_TIMEOUT = env.float("DATABASE_POOL_TIMEOUT", default=1.0)
# A lost or silent database must cost a request seconds, not a worker: libpq gives up connecting after
# DATABASE_CONNECT_TIMEOUT (whole seconds; libpq's minimum is 2), and PostgreSQL cancels any statement running
# longer than DATABASE_STATEMENT_TIMEOUT (seconds; keep it below gunicorn's --timeout, 30 s by default; 0 = none).
DATABASE_CONNECT_TIMEOUT = env.int("DATABASE_CONNECT_TIMEOUT", default=2)
DATABASE_STATEMENT_TIMEOUT = env.float("DATABASE_STATEMENT_TIMEOUT", default=20.0)
# Queries go to PostgreSQL with their parameters bound on the server, and a statement a connection has run
# DATABASE_PREPARE_THRESHOLD times is prepared there (psycopg's automatic prepared statements): later runs skip
# parsing and planning, which for a page of agents (two joins, two subqueries) costs PostgreSQL more than running
# it. The connections are the pool's (or persistent ones), so each keeps its statements. Django leaves both off for
# the sake of external poolers: behind PgBouncer in transaction mode without max_prepared_statements, set
# DATABASE_PREPARED_STATEMENTS=false.
DATABASE_PREPARED_STATEMENTS = env.bool("DATABASE_PREPARED_STATEMENTS", default=True)
DATABASE_PREPARE_THRESHOLD = env.int("DATABASE_PREPARE_THRESHOLD", default=5)
if DATABASE_PREPARE_THRESHOLD < 0:
    raise ImproperlyConfigured("DATABASE_PREPARE_THRESHOLD must be 0 (prepare at once) or a number of runs.")
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    _db_options = DATABASES["default"].setdefault("OPTIONS", {})
    _db_options.setdefault("connect_timeout", DATABASE_CONNECT_TIMEOUT)
    if DATABASE_PREPARED_STATEMENTS:
        _db_options.setdefault("server_side_binding", True)
        _db_options.setdefault("prepare_threshold", DATABASE_PREPARE_THRESHOLD)
    if DATABASE_POOL_MAX_SIZE > 0:
        if DATABASES["default"]["CONN_MAX_AGE"]:
            raise ImproperlyConfigured(
                "DATABASE_CONN_MAX_AGE must be 0 while connections are pooled (DATABASE_POOL_MAX_SIZE > 0): the pool "
                "keeps them. Set DATABASE_POOL_MAX_SIZE=0 to keep persistent connections without a pool instead."
            )
        if not 0 <= DATABASE_POOL_MIN_SIZE <= DATABASE_POOL_MAX_SIZE:
            raise ImproperlyConfigured("DATABASE_POOL_MIN_SIZE must be between 0 and DATABASE_POOL_MAX_SIZE.")
        _db_options.setdefault("pool", {
            "min_size": DATABASE_POOL_MIN_SIZE, "max_size": DATABASE_POOL_MAX_SIZE, "timeout": DATABASE_POOL_TIMEOUT,
        })
        DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
    if DATABASE_STATEMENT_TIMEOUT > 0:
        _statement_timeout = f"-c statement_timeout={round(DATABASE_STATEMENT_TIMEOUT * 1000)}"
        _db_options["options"] = " ".join(filter(None, [_db_options.get("options"), _statement_timeout]))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # `make run` serves the web process and a worker on one SQLite file: WAL lets readers go on while
    # one writer writes, IMMEDIATE transactions take the write lock up front (no upgrade deadlock),
    # and writers wait up to 20 s for it instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache: shared across processes (Redis in production; the database cache by default). ---
REDIS_URL = env.str("REDIS_URL", default="") or env.str("CACHE_URL", default="")
# Redis answers in well under a millisecond: a cache that takes longer than these (seconds) to connect or to
# answer is treated as lost (redis-py's own default is 5 s each, which a silent Redis adds to every request).
REDIS_SOCKET_CONNECT_TIMEOUT = env.float("REDIS_SOCKET_CONNECT_TIMEOUT", default=0.5)
REDIS_SOCKET_TIMEOUT = env.float("REDIS_SOCKET_TIMEOUT", default=0.5)
if REDIS_URL:
    CACHES = {
        "default": {
            # Django's RedisCache, reusing its redis-py clients (syndarix/cache.py).
            "BACKEND": "syndarix.cache.ReusingRedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "socket_connect_timeout": REDIS_SOCKET_CONNECT_TIMEOUT,
                "socket_timeout": REDIS_SOCKET_TIMEOUT,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "syndarix_cache"}}
# Seconds a verified API token and a caller's access to a project are kept in the cache (Redis only; 0 = never):
# every change that could alter them invalidates them at once, this only bounds how long an entry lives.
API_ACCESS_CACHE_SECONDS = env.int("API_ACCESS_CACHE_SECONDS", default=300)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    # Not a rule: revokes the user's API tokens when the password changes.
    {"NAME": "projects.password_validation.RevokeTokensOnPasswordChange"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

LOGIN_URL = "/admin/login/"
LOGIN_REDIRECT_URL = "/api/v1/"

# --- Security (production) ---
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
# Load balancers probe over plain HTTP: the health probes answer there too.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
# Browser preload lists accept only max-age >= 1 year with includeSubDomains, so `preload` is sent exactly then
# (DJANGO_SECURE_HSTS_PRELOAD=false opts out); asking for it with a shorter max-age is a configuration error.
HSTS_PRELOAD_MIN_SECONDS = 365 * 24 * 3600
_HSTS_PRELOADABLE = SECURE_HSTS_SECONDS >= HSTS_PRELOAD_MIN_SECONDS and SECURE_HSTS_INCLUDE_SUBDOMAINS
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=_HSTS_PRELOADABLE)
if SECURE_HSTS_PRELOAD and not _HSTS_PRELOADABLE:
    raise ImproperlyConfigured(
        f"DJANGO_SECURE_HSTS_PRELOAD=true needs DJANGO_SECURE_HSTS_SECONDS >= {HSTS_PRELOAD_MIN_SECONDS} (one year) "
        "and DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS=true: preload lists refuse anything shorter."
    )
# `check --deploy` asks for preload (W021); without a year of max-age, leaving it out is the correct answer.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD or not SECURE_HSTS_SECONDS else ["security.W021"]
# The client IP (rate limits, login throttling, logs): the number of reverse proxies in front of the app that
# append to X-Forwarded-For. 0 (default): REMOTE_ADDR, the header is ignored (a client could forge it).
TRUSTED_PROXY_HOPS = env.int("TRUSTED_PROXY_HOPS", default=0)

# --- Django REST framework ---
REST_FRAMEWORK = {
    # Token first so an anonymous request is answered 401 with `WWW-Authenticate: Token`.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "syndarix.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "syndarix.api.parsers.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "syndarix.api.pagination.EnvelopePagination",
    "PAGE_SIZE": 20,
    "DEFAULT_FILTER_BACKENDS": ["syndarix.api.filters.StrictFilterBackend"],
    "EXCEPTION_HANDLER": "syndarix.api.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "syndarix.api.schema.SyndarixAutoSchema",
    "DEFAULT_RENDERER_CLASSES": [
        "syndarix.api.renderers.JSONRenderer",  # DRF's JSON, encoded by orjson
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "COERCE_DECIMAL_TO_STRING": True,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Syndarix API",
    "DESCRIPTION": "Operate fleets of AI agents: projects, agent lifecycle, usage, contexts and AI tools.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Request bodies are documented as JSON only: form encodings cannot say null or nest (the browsable API and
    # `curl -d` still send forms, which the API accepts).
    "PARSER_WHITELIST": ["syndarix.api.parsers.SafeJSONParser"],
    # Several models have a `status`; name each choice set once so the schema has no enum clashes.
    "ENUM_NAME_OVERRIDES": {
        "AgentStatusEnum": "agents.choices.AgentStatus",
        "TerminationReasonEnum": "agents.choices.TerminationReason",
        "IssueStatusEnum": "projects.choices.IssueStatus",
        "WorkspaceRoleEnum": "projects.choices.WorkspaceRole",
        "RunStatusEnum": "agents.choices.RunStatus",
        "RunRequestStatusEnum": "agents.choices.RunRequestStatus",
        "RunRequestKindEnum": "agents.choices.RunRequestKind",
        "StepKindEnum": "agents.choices.StepKind",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "syndarix.api.schema.add_rate_limit_headers",
        "syndarix.api.schema.add_outage_responses",
    ],
}

# --- API tokens (django-rest-knox: hashed at rest, one per login, expiring) ---
AUTH_TOKEN_TTL_HOURS = env.float("AUTH_TOKEN_TTL_HOURS", default=24 * 30)
REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=AUTH_TOKEN_TTL_HOURS) if AUTH_TOKEN_TTL_HOURS > 0 else None,
    "AUTH_HEADER_PREFIX": "Token",
    "AUTO_REFRESH": False,
}

# --- Rate limiting (django-ratelimit on the shared cache) ---
RATELIMIT_ENABLE = env.bool("RATELIMIT_ENABLE", default=True)
RATELIMIT_USE_CACHE = "default"
# When the cache is unreachable: true (default) lets requests through unlimited and logs a warning; false refuses
# them with 503 service_unavailable. Never a 500.
RATELIMIT_FAIL_OPEN = env.bool("RATELIMIT_FAIL_OPEN", default=True)
RATELIMIT_IP_META_KEY = "syndarix.api.clientip.client_ip"

# --- Agents ---
AGENTS_ENABLED = env.bool("AGENTS_ENABLED", default=True)
AGENT_REGISTRY_MODULES = env.list("AGENT_REGISTRY_MODULES", default=[])
AGENT_MAX_CONCURRENCY = env.int("AGENT_MAX_CONCURRENCY", default=50)
AGENT_HOOK_TIMEOUT_SECONDS = env.float("AGENT_HOOK_TIMEOUT_SECONDS", default=10.0)
AGENT_CONTEXT_HISTORY_LIMIT = env.int("AGENT_CONTEXT_HISTORY_LIMIT", default=100)
AGENT_CONTEXT_MAX_BYTES = env.int("AGENT_CONTEXT_MAX_BYTES", default=1024 * 1024)

# --- Agent runtime: runs execute on Celery workers (agents/runtime/) ---
AGENT_HEARTBEAT_SECONDS = env.float("AGENT_HEARTBEAT_SECONDS", default=10.0)
AGENT_HEARTBEAT_TIMEOUT_SECONDS = env.float("AGENT_HEARTBEAT_TIMEOUT_SECONDS", default=60.0)
AGENT_RUN_MAX_ATTEMPTS = env.int("AGENT_RUN_MAX_ATTEMPTS", default=3)
AGENT_RUN_MAX_STEPS = env.int("AGENT_RUN_MAX_STEPS", default=20)
# A worker process holds up to its concurrency of runs, but at most AGENT_WORKER_ACTIVE_RUNS of them execute Python
# at once (the others wait on their LLM, or for a slot; 0: no bound). A run waits at most
# AGENT_WORKER_ACTIVE_RUNS_WAIT_SECONDS for a slot, then goes on without one (agents.runtime.slots).
AGENT_WORKER_ACTIVE_RUNS = env.int("AGENT_WORKER_ACTIVE_RUNS", default=4)
AGENT_WORKER_ACTIVE_RUNS_WAIT_SECONDS = env.float("AGENT_WORKER_ACTIVE_RUNS_WAIT_SECONDS", default=2.0)
if AGENT_WORKER_ACTIVE_RUNS < 0 or AGENT_WORKER_ACTIVE_RUNS_WAIT_SECONDS < 0:
    raise ImproperlyConfigured("AGENT_WORKER_ACTIVE_RUNS and AGENT_WORKER_ACTIVE_RUNS_WAIT_SECONDS must not be "
                               "negative.")
# The runtime's LLM upstream: an OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, LiteLLM).
# Without a URL, debug deployments use the offline provider (a scripted stand-in, no LLM); production refuses it.
AGENT_LLM_API_URL = env.str("AGENT_LLM_API_URL", default="")
AGENT_LLM_API_KEY = env.str("AGENT_LLM_API_KEY", default="")
AGENT_LLM_MODEL = env.str("AGENT_LLM_MODEL", default="gpt-4o-mini")
AGENT_LLM_PROVIDER = env.str("AGENT_LLM_PROVIDER", default="") or (
    "openai" if AGENT_LLM_API_URL or not DEBUG else "offline"
)
if AGENT_LLM_PROVIDER == "offline" and not DEBUG:
    raise ImproperlyConfigured(
        "AGENT_LLM_PROVIDER=offline is a stand-in for demos and is refused when DJANGO_DEBUG is false; "
        "set AGENT_LLM_API_URL to an OpenAI-compatible endpoint."
    )
AGENT_LLM_CONNECT_TIMEOUT = env.float("AGENT_LLM_CONNECT_TIMEOUT", default=3.05)
AGENT_LLM_READ_TIMEOUT = env.float("AGENT_LLM_READ_TIMEOUT", default=120.0)
# Wall clock for one completion, retries included, however slowly the upstream answers (seconds).
AGENT_LLM_TOTAL_TIMEOUT = env.float("AGENT_LLM_TOTAL_TIMEOUT", default=180.0)
AGENT_LLM_MAX_RETRIES = env.int("AGENT_LLM_MAX_RETRIES", default=2)
AGENT_LLM_RETRY_BACKOFF_SECONDS = env.float("AGENT_LLM_RETRY_BACKOFF_SECONDS", default=0.5)
# tool_choice sent whenever tools are offered (a template's llm.tool_choice overrides); empty sends none.
AGENT_LLM_TOOL_CHOICE = env.str("AGENT_LLM_TOOL_CHOICE", default="auto").strip()
if AGENT_LLM_TOOL_CHOICE not in ("", "auto", "required", "none"):
    raise ImproperlyConfigured("AGENT_LLM_TOOL_CHOICE must be auto, required, none or empty.")
# max_tokens of every call (tokens; a template's llm.max_tokens overrides); 0 sends none.
AGENT_LLM_MAX_TOKENS = env.int("AGENT_LLM_MAX_TOKENS", default=2048)
# Stream LLM calls (stream: true, stream_options.include_usage) so their text reaches the run's event stream as
# llm.delta as it is generated (with Redis); false asks for whole answers. An upstream that refuses or garbles a
# streamed request is asked without streaming.
AGENT_LLM_STREAM = env.bool("AGENT_LLM_STREAM", default=True)
if AGENT_LLM_MAX_TOKENS < 0:
    raise ImproperlyConfigured("AGENT_LLM_MAX_TOKENS must be 0 (send none) or a number of tokens.")
# Past those quick retries, an unavailable upstream (connection errors, timeouts, 429, a 5xx that is not a validation
# error of the request) makes a run wait for its next attempt without a worker, with exponential backoff and jitter
# from AGENT_LLM_OUTAGE_BACKOFF_SECONDS up to AGENT_LLM_OUTAGE_BACKOFF_MAX_SECONDS (or the upstream's Retry-After),
# for up to AGENT_LLM_OUTAGE_SECONDS; then the run fails with upstream_unavailable.
AGENT_LLM_OUTAGE_SECONDS = env.float("AGENT_LLM_OUTAGE_SECONDS", default=900.0)
AGENT_LLM_OUTAGE_BACKOFF_SECONDS = env.float("AGENT_LLM_OUTAGE_BACKOFF_SECONDS", default=2.0)
AGENT_LLM_OUTAGE_BACKOFF_MAX_SECONDS = env.float("AGENT_LLM_OUTAGE_BACKOFF_MAX_SECONDS", default=60.0)

# --- Celery (the distributed engine): Redis as broker in production; a folder when there is no Redis ---
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or REDIS_URL or "filesystem://localhost/"
if CELERY_BROKER_URL.startswith("filesystem://"):
    # Zero setup (`make run`): messages are files in a git-ignored folder, shared by the web process and the worker.
    _BROKER_DIR = Path(env.str("CELERY_FILESYSTEM_BROKER_DIR", default=str(BASE_DIR / ".celery")))
    for _folder in ("queue", "processed", "control"):
        (_BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_BROKER_DIR / "queue"),
        "data_folder_out": str(_BROKER_DIR / "queue"),
        "processed_folder": str(_BROKER_DIR / "processed"),
        "store_processed": False,
        "control_folder": str(_BROKER_DIR / "control"),
        "polling_interval": 0.1,
    }
# Queuing a task happens inside requests (runs, lifecycle hooks): a lost or silent broker must cost seconds, not
# hang the request (kombu's Redis transport waits for ever by default). Seconds to connect and for each answer;
# keep the answer timeout above kombu's 1 s BRPOP so idle workers are not disturbed.
CELERY_BROKER_SOCKET_TIMEOUT = env.float("CELERY_BROKER_SOCKET_TIMEOUT", default=2.0)
CELERY_BROKER_CONNECTION_TIMEOUT = min(4.0, CELERY_BROKER_SOCKET_TIMEOUT)
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "socket_connect_timeout": CELERY_BROKER_CONNECTION_TIMEOUT,
        "socket_timeout": CELERY_BROKER_SOCKET_TIMEOUT,
    }
# A publish is one attempt, then the caller logs the failure (a run is sent again by the reaper): retrying on a
# broker that went silent would hold the request for another connect and answer timeout each time (6 s, not 2).
CELERY_TASK_PUBLISH_RETRY = False
# Runs go to the default queue; the housekeeping (the reaper, lifecycle hooks) to a queue of its own that the
# Procfile's `beat` process consumes, so a run queue full of work never delays it.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="syndarix")
CELERY_MAINTENANCE_QUEUE = env.str("CELERY_MAINTENANCE_QUEUE", default="") or f"{CELERY_TASK_DEFAULT_QUEUE}-maintenance"
CELERY_TASK_ROUTES = ("agents.runtime.tasks.route_task",)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
# A message is acknowledged after its task ran, and given back when the worker process dies mid-task,
# so a crashed worker never loses a run; tasks are written to be delivered more than once.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "reap-stale-runs": {"task": "agents.runtime.tasks.reap_stale_runs", "schedule": max(1.0, AGENT_HEARTBEAT_SECONDS)},
    "prune-events": {"task": "agents.events.tasks.prune_events", "schedule": 3600.0},
}

# --- Events (the outbox, pub/sub, SSE streams) ---
# Days an event is kept for replay (Last-Event-ID) and webhooks; the hourly prune job deletes older ones.
EVENTS_RETENTION_DAYS = env.float("EVENTS_RETENTION_DAYS", default=7.0)
# Prefix of the Redis pub/sub channels events are published on (one Redis shared by several deployments).
EVENTS_CHANNEL_PREFIX = env.str("EVENTS_CHANNEL_PREFIX", default="syndarix:events")
# How often an open stream reads the outbox without Redis (seconds); with Redis, pub/sub wakes it.
EVENTS_POLL_SECONDS = env.float("EVENTS_POLL_SECONDS", default=0.5)
# A comment line every so many seconds while a stream is idle (keeps proxies from closing it).
EVENTS_KEEPALIVE_SECONDS = env.float("EVENTS_KEEPALIVE_SECONDS", default=15.0)

# --- Webhooks (agents.webhooks: Standard Webhooks deliveries of the events outbox) ---
# Targets whose host resolves to a loopback, private, link-local, shared, reserved or metadata address are refused
# (when saved, and again when connecting); true allows them. Defaults to DJANGO_DEBUG: `make run` and the tests may
# post to receivers on this machine, a production deployment may not unless it says so.
WEBHOOK_ALLOW_PRIVATE_TARGETS = env.bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", default=DEBUG)
# Seconds to connect to a receiver and to wait for its answer; longer counts as a failed attempt.
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10.0)
# A failed attempt is retried after WEBHOOK_RETRY_BACKOFF_SECONDS, doubling each time up to
# WEBHOOK_RETRY_BACKOFF_MAX_SECONDS; a delivery still failing WEBHOOK_RETRY_MAX_AGE_SECONDS after its first attempt
# is failed, and the endpoint's next event goes.
WEBHOOK_RETRY_BACKOFF_SECONDS = env.float("WEBHOOK_RETRY_BACKOFF_SECONDS", default=5.0)
WEBHOOK_RETRY_BACKOFF_MAX_SECONDS = env.float("WEBHOOK_RETRY_BACKOFF_MAX_SECONDS", default=3600.0)
WEBHOOK_RETRY_MAX_AGE_SECONDS = env.float("WEBHOOK_RETRY_MAX_AGE_SECONDS", default=86400.0)
# An endpoint whose deliveries failed this many times in a row (each after its retries) is disabled.
WEBHOOK_MAX_CONSECUTIVE_FAILURES = env.int("WEBHOOK_MAX_CONSECUTIVE_FAILURES", default=5)
# How often beat queues the dispatcher (seconds), and how long one dispatcher task keeps delivering before it
# returns (seconds; the next one continues).
WEBHOOK_DISPATCH_INTERVAL_SECONDS = env.float("WEBHOOK_DISPATCH_INTERVAL_SECONDS", default=1.0)
WEBHOOK_DISPATCH_BUDGET_SECONDS = env.float("WEBHOOK_DISPATCH_BUDGET_SECONDS", default=30.0)
for _name in ("WEBHOOK_TIMEOUT_SECONDS", "WEBHOOK_RETRY_BACKOFF_SECONDS", "WEBHOOK_RETRY_BACKOFF_MAX_SECONDS",
              "WEBHOOK_DISPATCH_INTERVAL_SECONDS", "WEBHOOK_DISPATCH_BUDGET_SECONDS"):
    if globals()[_name] <= 0:
        raise ImproperlyConfigured(f"{_name} must be a positive number of seconds.")
if WEBHOOK_RETRY_MAX_AGE_SECONDS < 0 or WEBHOOK_MAX_CONSECUTIVE_FAILURES < 1:
    raise ImproperlyConfigured(
        "WEBHOOK_RETRY_MAX_AGE_SECONDS must be 0 or more seconds and WEBHOOK_MAX_CONSECUTIVE_FAILURES at least 1."
    )
CELERY_BEAT_SCHEDULE["dispatch-webhooks"] = {
    "task": "agents.webhooks.tasks.dispatch_webhooks",
    "schedule": WEBHOOK_DISPATCH_INTERVAL_SECONDS,
    # A dispatcher queued behind a busy one is dropped rather than run late: the next tick queues another.
    "options": {"expires": max(2.0, 2 * WEBHOOK_DISPATCH_INTERVAL_SECONDS)},
}

# --- AI services (upstream LLM) ---
AI_SERVICES_API_URL = env.str("AI_SERVICES_API_URL", default="")
# Without a URL, debug deployments use the offline stand-in (a scripted refinement, no LLM); production refuses it.
AI_SERVICES_PROVIDER = env.str("AI_SERVICES_PROVIDER", default="") or (
    "agenta" if AI_SERVICES_API_URL or not DEBUG else "offline"
)
if AI_SERVICES_PROVIDER.strip().lower() == "offline" and not DEBUG:
    raise ImproperlyConfigured(
        "AI_SERVICES_PROVIDER=offline is a stand-in for demos and is refused when DJANGO_DEBUG is false; "
        "configure an upstream (AI_SERVICES_PROVIDER=agenta or openai, with AI_SERVICES_API_URL)."
    )
AI_SERVICES_API_KEY = env.str("AI_SERVICES_API_KEY", default="")
AI_SERVICES_ENVIRONMENT_SLUG = env.str("AI_SERVICES_ENVIRONMENT_SLUG", default="")
AI_SERVICES_REFINE_PROMPT_KEY = env.str("AI_SERVICES_REFINE_PROMPT_KEY", default="")
AI_SERVICES_MODEL = env.str("AI_SERVICES_MODEL", default="")
AI_SERVICES_CONNECT_TIMEOUT = env.float("AI_SERVICES_CONNECT_TIMEOUT", default=3.05)
AI_SERVICES_READ_TIMEOUT = env.float("AI_SERVICES_READ_TIMEOUT", default=60.0)
# Wall clock for one upstream call, however slowly the upstream answers (seconds).
AI_SERVICES_TOTAL_TIMEOUT = env.float("AI_SERVICES_TOTAL_TIMEOUT", default=60.0)

# --- MCP server (/mcp) ---
MCP_SESSION_TTL_SECONDS = env.int("MCP_SESSION_TTL_SECONDS", default=86400)
MCP_TOOLS_PAGE_SIZE = env.int("MCP_TOOLS_PAGE_SIZE", default=50)

# --- Metrics (Prometheus: /metrics, and the Celery workers' METRICS_PORT; syndarix.metrics) ---
# Bearer token a scraper sends (`Authorization: Bearer <token>`); empty: only clients on loopback may read them.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Port a Celery worker serves its per-process series on (0: none). PROMETHEUS_MULTIPROC_DIR (an environment
# variable read by prometheus-client when a process starts) adds up the processes of one machine.
METRICS_PORT = env.int("METRICS_PORT", default=0)

# --- Traces (OpenTelemetry over OTLP/HTTP; syndarix.telemetry) ---
# Traces are exported when the standard OTEL_EXPORTER_OTLP_ENDPOINT variable is set (read from the environment by the
# OpenTelemetry SDK, like the other OTEL_* variables). Prompt and completion text go into the LLM calls' spans only
# when this is true (the variable OpenTelemetry's GenAI instrumentations read).
OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT = env.bool(
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", default=False
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("DJANGO_LOG_LEVEL", default="INFO")},
}
