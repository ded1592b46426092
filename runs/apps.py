from django.apps import AppConfig

from controlplane import hooks
from runs.engine.conditions import OPS
from runs.engine.conditions import problems as condition_problems
from runs.engine.patterns import install_in_jsonschema, schema_pattern_problems


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Workflows and runs"

    def ready(self) -> None:
        install_in_jsonschema()  # JSON Schema patterns are tenants' regexes: RE2, not re
        # agents checks tools' schemas and router rules with the engine, which it may not import
        hooks.schema_pattern_problems.register(schema_pattern_problems)
        hooks.condition_problems.register(condition_problems)
        hooks.condition_ops.register(condition_ops)


def condition_ops() -> tuple[str, ...]:
    """The engine's condition operators, for the router agents' schema."""
    return OPS
