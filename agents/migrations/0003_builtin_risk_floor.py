"""Tools registered on a built-in below the built-in's floor are raised to it (ticket_update
is destructive: it can resolve a ticket, which is how a refund is recorded)."""

from django.db import migrations

# the floors as they were when this migration was written (agents/tools/builtin.py)
FLOORS = {"ticket_update": "destructive", "ticket_create": "write", "http_request": "write"}
ORDER = ["read", "write", "destructive"]


def raise_to_floor(apps, schema_editor):
    Tool = apps.get_model("agents", "Tool")
    for builtin, floor in FLOORS.items():
        lower = ORDER[: ORDER.index(floor)]
        Tool._base_manager.filter(kind="builtin", builtin=builtin, risk__in=lower).update(
            risk=floor
        )


class Migration(migrations.Migration):
    dependencies = [("agents", "0002_registry")]

    operations = [migrations.RunPython(raise_to_floor, migrations.RunPython.noop)]
