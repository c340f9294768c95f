"""gunicorn settings shared by `make run`, the tests, the benchmarks and the Docker image.

Command-line flags (--bind, --workers) override these. gunicorn reads only the names
of its settings from this module; `command` is for our own launchers.
"""

import sys


def command(bind: str, workers: int) -> list[str]:
    """The command line that serves the app with this configuration."""
    return [sys.executable, "-m", "gunicorn", "-c", "python:apm_platform.gunicorn_conf",
            "--bind", bind, "--workers", str(workers)]  # fmt: skip


wsgi_app = "apm_platform.wsgi:application"
bind = "0.0.0.0:8000"
workers = 2
# Large ingest batches take a while to parse and COPY; a stuck worker still gets killed.
timeout = 60
graceful_timeout = 30
# Our middleware writes one JSON access line per request; gunicorn's would duplicate it.
accesslog = None
# No gunicornc control socket: unused, and every server on a host would share its path.
control_socket_disable = True
# Recycle workers now and then so a slow leak cannot grow without bound.
max_requests = 20000
max_requests_jitter = 2000
# gunicorn's own messages (start, signals, worker deaths) as JSON lines like the app's.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "apm_platform.jsonlog.JsonLogFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
    # gunicorn merges this shallowly over its defaults: root must name our handler.
    "root": {"handlers": ["stderr"], "level": "INFO"},
    "loggers": {"gunicorn.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False}},
}
