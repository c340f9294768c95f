#!/usr/bin/env python
"""Django's command-line utility.

Without DATABASE_URL, the embedded PostgreSQL is started for the command (and stopped
afterwards unless something else, such as `make run`, had it running already).
"""

import contextlib
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apm_platform.settings")
    from django.conf import settings
    from django.core.management import execute_from_command_line

    embedded = settings.EMBEDDED_DATABASE
    with embedded.running() if embedded else contextlib.nullcontext():
        execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
