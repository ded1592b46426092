"""LLM agent versions published before ``builtin_tools`` existed ran with the context and
memory tools always on: they keep them (granted explicitly), so their behaviour does not
change silently. New versions get none unless their configuration lists them."""

from django.db import migrations


def grant_to_existing(apps, schema_editor):
    AgentVersion = apps.get_model("agents", "AgentVersion")
    versions = AgentVersion._base_manager.filter(agent__kind="llm").exclude(
        config__has_key="builtin_tools"
    )
    for version in versions.iterator():
        version.config = {**version.config, "builtin_tools": ["context", "memory"]}
        version.save(update_fields=["config"])


class Migration(migrations.Migration):
    dependencies = [("agents", "0003_builtin_risk_floor")]

    operations = [migrations.RunPython(grant_to_existing, migrations.RunPython.noop)]
