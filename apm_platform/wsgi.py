"""WSGI entry point (gunicorn apm_platform.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apm_platform.settings")

application = get_wsgi_application()
