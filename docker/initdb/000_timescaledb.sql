-- Run once, by the image's entrypoint, when the database cluster is created.
-- TimescaleDB: the analytics backend (APM_ANALYTICS_BACKEND=auto picks it up).
CREATE EXTENSION IF NOT EXISTS timescaledb;
