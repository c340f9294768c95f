"""WSGI entry point (gunicorn apm_platform.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apm_platform.settings")

application = get_wsgi_application()

# A web worker: every statement within the API's time limit (db_timeouts.py).
from apm_platform import db_timeouts  # noqa: E402 - needs the settings loaded above

db_timeouts.serve_requests()
