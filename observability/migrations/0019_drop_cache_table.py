"""The database cache table of 0014 is unused: failed sign-ins are counted in
apm_login_throttle, for the UI and the admin alike."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("observability", "0018_rollup_dimension_indexes")]

    operations = [migrations.RunSQL("DROP TABLE IF EXISTS apm_cache", migrations.RunSQL.noop)]
