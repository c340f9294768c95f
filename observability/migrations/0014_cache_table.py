"""The database cache table (settings.CACHES): state shared by every worker, such as
failed-login counts. As `manage.py createcachetable` would make it."""

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("observability", "0013_read_path")]

    operations = [
        migrations.RunPython(
            create_cache_table,
            lambda apps, schema_editor: schema_editor.execute("DROP TABLE IF EXISTS apm_cache"),
        ),
    ]
