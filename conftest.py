"""Start the test suite's own embedded PostgreSQL (when DATABASE_URL is unset)."""


def pytest_configure(config):
    from django.conf import settings

    embedded = getattr(settings, "EMBEDDED_DATABASE", None)
    if embedded is not None and embedded.start():
        config.add_cleanup(embedded.stop)
