"""Test and CI settings: the production settings plus safe defaults for a test run.

The test suite never touches the demo data: without DATABASE_URL it runs on its own
embedded PostgreSQL instance (.data/test-pg), and pytest-django creates a `test_*`
database in either case.
"""

import os

# A test run needs no secrets of its own; set them before the settings are evaluated.
os.environ.setdefault("SECRET_KEY", "insecure-test-only-key")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
# Live-server threads would otherwise keep connections open past the test database's
# teardown ("database is being accessed by other users").
os.environ.setdefault("DATABASE_CONN_MAX_AGE", "0")

import zlib

from apm_platform.embedded_db import EmbeddedPostgres
from apm_platform.settings import *  # noqa: F403
from apm_platform.settings import BASE_DIR, DATABASES, EMBEDDED_DATABASE, env_int

# The test database's port, by default derived from the checkout's path: test runs of
# two checkouts on one machine (a developer's and CI's clean clone) must not collide.
# Below the local cluster's ports (20000+) and Linux' ephemeral range (32768+), where a
# busy machine's outgoing connections can hold it just as the server starts.
_CHECKOUT_PORT = 12000 + zlib.crc32(str(BASE_DIR).encode()) % 8000

if EMBEDDED_DATABASE is not None:
    EMBEDDED_DATABASE = EmbeddedPostgres(
        data_dir=BASE_DIR / ".data" / "test-pg",
        port=env_int("EMBEDDED_TEST_DB_PORT", _CHECKOUT_PORT, minimum=1),
    )
    DATABASES["default"]["PORT"] = EMBEDDED_DATABASE.port

# The router tests' replica alias. As a test mirror it points at the primary (Django
# neither creates nor flushes it) until a test points it at a real streaming standby
# (apm_platform/tests/test_db_router.py). DATABASE_REPLICAS stays empty: nothing else
# routes to it.
DATABASES["replica1"] = {**DATABASES["default"], "TEST": {"MIRROR": "default"}}

SECURE_SSL_REDIRECT = False
# Tests serve static files from the apps; no collectstatic output exists.
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True
# Password hashing is not under test; the fast hasher keeps the suite quick.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
