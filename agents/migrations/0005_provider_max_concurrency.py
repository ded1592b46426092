"""Providers get max_concurrency: the most requests in flight at once, across workers."""

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0004_builtin_tools_for_existing_versions"),
    ]

    operations = [
        migrations.AddField(
            model_name="providerconnection",
            name="max_concurrency",
            field=models.PositiveIntegerField(
                default=100,
                help_text="Most requests this provider may have in flight at once, across every "
                "worker; more wait for a slot.",
                validators=[
                    django.core.validators.MinValueValidator(1),
                    django.core.validators.MaxValueValidator(10000),
                ],
            ),
        ),
    ]
