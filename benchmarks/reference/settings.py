"""Settings of the plain-DRF reference: the product's settings (same database, cache and apps, so the same models)
with Django's default middleware, this package's URLconf, and DRF configured the way its tutorial does it —
knox token authentication, ``IsAuthenticated``, cursor pagination, page size 20, DRF's own renderers.

Serve with ``DJANGO_SETTINGS_MODULE=benchmarks.reference.settings gunicorn syndarix.wsgi`` from the repository root
(``benchmarks/bench_fleet.py`` does).
"""

from syndarix.settings import *  # noqa: F403

ROOT_URLCONF = "benchmarks.reference.urls"

# ``django-admin startproject``'s middleware.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["knox.auth.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    "PAGE_SIZE": 20,
}
