"""gunicorn settings shared by `make run`, the benchmarks and the Docker image.

Command-line flags (--bind, --workers) override these.
"""

wsgi_app = "apm_platform.wsgi:application"
bind = "0.0.0.0:8000"
workers = 2
# Large ingest batches take a while to parse and COPY; a stuck worker still gets killed.
timeout = 60
graceful_timeout = 30
# Our middleware writes one JSON access line per request; gunicorn's would duplicate it.
accesslog = None
# Recycle workers now and then so a slow leak cannot grow without bound.
max_requests = 20000
max_requests_jitter = 2000


def child_exit(server, worker):
    # Drop the dead worker's live gauges from the multiprocess metrics directory.
    # Imported here, not at the top: prometheus_client picks its storage mode at import
    # time, and the master must not import it before --env PROMETHEUS_MULTIPROC_DIR applies.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
