"""WSGI entry point (gunicorn syndarix.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syndarix.settings")
application = get_wsgi_application()
