"""Superseded: this created a database cache table for failed-login counts; those now
live in apm_login_throttle (0017), and 0019 drops the table where this made it. A no-op
kept for the migration graph."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("observability", "0013_read_path")]

    operations = []
