"""Search reads the latest requests of a document in a project: the index gets `time`."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("observability", "0014_cache_table"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="requestdocument",
            name="apm_reqdoc_hash_project",
        ),
        migrations.AddIndex(
            model_name="requestdocument",
            index=models.Index(
                fields=["doc_hash", "project", "-time"], name="apm_reqdoc_hash_time"
            ),
        ),
    ]
