from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Workflows and runs"

    def ready(self) -> None:
        from runs.engine.patterns import install_in_jsonschema

        install_in_jsonschema()  # JSON Schema patterns are tenants' regexes: RE2, not re
