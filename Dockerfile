# The web app image: gunicorn serving Django, non-root, no build tools at run time.
# Build: docker build -t apm-web .

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
COPY requirements.txt .
RUN python -m venv /opt/venv && /opt/venv/bin/pip install -r requirements.txt

# The UI's front-end libraries (htmx, uPlot) at the versions package-lock.json pins.
FROM node:20-bookworm-slim AS assets
WORKDIR /build
COPY package.json package-lock.json ./
COPY scripts/dev/ui_assets.sh scripts/dev/
# The image needs the UI's libraries only, not the development tools (newman).
ENV NPM_CONFIG_OMIT=dev
RUN scripts/dev/ui_assets.sh

FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=apm_platform.settings \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus
RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin apm
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY apm_platform ./apm_platform
COPY observability ./observability
COPY --from=assets /build/observability/ui/static/ui/vendor ./observability/ui/static/ui/vendor
COPY manage.py ./
# Railway (railway.json) sources it before migrate and gunicorn: its variables into ours.
COPY setup_railway_env.sh ./
COPY docker/entrypoint.sh /usr/local/bin/apm-entrypoint
# Static files (admin, Swagger UI) are collected at build time; WhiteNoise serves them.
RUN SECRET_KEY=collectstatic-only ALLOWED_HOSTS=build DATABASE_URL=postgres://build/none \
    python manage.py collectstatic --noinput --verbosity 0
USER 10001:10001
EXPOSE 8000
# Liveness only: readiness (/readyz, database and migrations) is the orchestrator's check.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["/usr/local/bin/apm-entrypoint"]
CMD ["gunicorn", "-c", "python:apm_platform.gunicorn_conf"]
