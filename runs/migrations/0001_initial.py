from django.db import migrations


class Migration(migrations.Migration):
    """Starting point of this app's migrations; its models arrive in later migrations."""

    initial = True
    dependencies = []
    operations = []
