"""Syndarix settings: one module, read from the environment (see `.env.example`).

Zero-setup defaults (SQLite file, database cache, DEBUG on) make `make run` work on a fresh clone;
production sets `DJANGO_DEBUG=false`, `DJANGO_SECRET_KEY`, `DATABASE_URL` (PostgreSQL) and
`REDIS_URL`.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

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
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "projects",
    "agents",
    "aiservices",
    "buildkit",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache: shared across processes (Redis in production; the database cache by default). ---
REDIS_URL = env.str("REDIS_URL", default="") or env.str("CACHE_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "syndarix_cache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
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
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG

# --- Django REST framework ---
REST_FRAMEWORK = {
    # Token first so an anonymous request is answered 401 with `WWW-Authenticate: Token`.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
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
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "EXCEPTION_HANDLER": "syndarix.api.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
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
    # Several models have a `status`; name each choice set once so the schema has no enum clashes.
    "ENUM_NAME_OVERRIDES": {
        "AgentStatusEnum": "agents.choices.AgentStatus",
        "TerminationReasonEnum": "agents.choices.TerminationReason",
        "IssueStatusEnum": "projects.choices.IssueStatus",
        "WorkspaceRoleEnum": "projects.choices.WorkspaceRole",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "syndarix.api.schema.add_rate_limit_headers",
    ],
}

# --- Rate limiting (django-ratelimit on the shared cache) ---
RATELIMIT_ENABLE = env.bool("RATELIMIT_ENABLE", default=True)
RATELIMIT_USE_CACHE = "default"

# --- Agents ---
AGENTS_ENABLED = env.bool("AGENTS_ENABLED", default=True)
AGENT_REGISTRY_MODULES = env.list("AGENT_REGISTRY_MODULES", default=[])
AGENT_MAX_CONCURRENCY = env.int("AGENT_MAX_CONCURRENCY", default=50)
AGENT_HOOK_TIMEOUT_SECONDS = env.float("AGENT_HOOK_TIMEOUT_SECONDS", default=10.0)
AGENT_CONTEXT_HISTORY_LIMIT = env.int("AGENT_CONTEXT_HISTORY_LIMIT", default=100)
AGENT_CONTEXT_MAX_BYTES = env.int("AGENT_CONTEXT_MAX_BYTES", default=1024 * 1024)

# --- AI services (upstream LLM) ---
AI_SERVICES_PROVIDER = env.str("AI_SERVICES_PROVIDER", default="agenta")
AI_SERVICES_API_URL = env.str("AI_SERVICES_API_URL", default="")
AI_SERVICES_API_KEY = env.str("AI_SERVICES_API_KEY", default="")
AI_SERVICES_ENVIRONMENT_SLUG = env.str("AI_SERVICES_ENVIRONMENT_SLUG", default="")
AI_SERVICES_REFINE_PROMPT_KEY = env.str("AI_SERVICES_REFINE_PROMPT_KEY", default="")
AI_SERVICES_MODEL = env.str("AI_SERVICES_MODEL", default="")
AI_SERVICES_CONNECT_TIMEOUT = env.float("AI_SERVICES_CONNECT_TIMEOUT", default=3.05)
AI_SERVICES_READ_TIMEOUT = env.float("AI_SERVICES_READ_TIMEOUT", default=60.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("DJANGO_LOG_LEVEL", default="INFO")},
}
