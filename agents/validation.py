"""Validation of agent configurations: a JSON Schema per kind, then references inside the tenant.

Errors come back as ``{"config.<path>": ["message"]}`` so the API and forms can show each
one next to its field.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from agents.choices import BUILTIN_TOOL_GROUPS, AgentKind, ProviderKind
from agents.http_agent import auth_format_problem
from agents.models import ProviderConnection, Secret
from agents.tools.base import validate_schema
from controlplane import egress, hooks
from controlplane.choices import Status
from controlplane.tenancy.choices import Role

_CONDITION = {"$ref": "#/$defs/condition"}  # see _condition()

CONFIG_SCHEMAS: dict[str, dict[str, Any]] = {
    AgentKind.LLM: {
        "type": "object",
        "required": ["provider", "model"],
        "additionalProperties": False,
        "properties": {
            "provider": {"type": "string", "minLength": 1, "description": "Provider slug"},
            "model": {"type": "string", "minLength": 1},
            "system_prompt": {"type": "string", "maxLength": 100000},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": 200000},
            "output_schema": {"type": ["object", "null"]},
            "max_iterations": {"type": "integer", "minimum": 1, "maximum": 50},
            "builtin_tools": {
                "type": "array",
                "items": {"enum": list(BUILTIN_TOOL_GROUPS)},
                "uniqueItems": True,
                "description": "Engine tools the agent gets besides its granted tools: "
                "context (context_get, context_set: the run's shared context), memory "
                "(memory_get, memory_set: its long-term memory). None when omitted.",
            },
        },
    },
    AgentKind.HTTP: {
        "type": "object",
        "required": ["url"],
        "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "pattern": "^https?://[^\\s/$.?#].[^\\s]*$"},
            "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 900},
            "auth_header": {"type": "string", "pattern": "^[A-Za-z0-9-]+$"},
            "auth_secret": {"type": "string", "description": "Name of a tenant secret"},
            "auth_format": {
                "type": "string",
                "maxLength": 500,
                "description": "The header value: {} (or {secret}) once where the secret goes, "
                "e.g. 'Bearer {}'. Not a format string: nothing else is substituted.",
            },
        },
    },
    AgentKind.ROUTER: {
        "type": "object",
        "required": ["mode"],
        "additionalProperties": False,
        "properties": {
            "mode": {"enum": ["rules", "classifier"]},
            "rules": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["when", "route"],
                    "additionalProperties": False,
                    "properties": {
                        "when": {
                            "oneOf": [
                                _CONDITION,
                                {"type": "array", "items": _CONDITION, "minItems": 1},
                            ]
                        },
                        "route": {"type": "string", "minLength": 1},
                    },
                },
            },
            "default_route": {"type": "string"},
            "provider": {"type": "string"},
            "model": {"type": "string"},
            "routes": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "description": {"type": "string"},
                    },
                },
            },
            "instructions": {"type": "string"},
        },
        "allOf": [
            {"if": {"properties": {"mode": {"const": "rules"}}}, "then": {"required": ["rules"]}},
            {
                "if": {"properties": {"mode": {"const": "classifier"}}},
                "then": {"required": ["provider", "model", "routes"]},
            },
        ],
    },
    AgentKind.HUMAN: {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "instructions": {"type": "string"},
            "response_schema": {"type": ["object", "null"]},
            "assignee_role": {"enum": Role.values},
        },
    },
}


def _condition() -> dict[str, Any]:
    """One router-rule condition; its operators are the engine's, which runs registers."""
    return {
        "type": "object",
        "required": ["path", "op"],
        "additionalProperties": False,
        "properties": {
            "path": {
                "type": "string",
                "minLength": 1,
                "description": "Dotted path into the step input, e.g. input.category",
            },
            "op": {"enum": [op for ops in hooks.condition_ops.call() for op in ops]},
            "value": {},
        },
    }


def _path(error) -> str:
    parts = [str(p) for p in error.absolute_path]
    return "config" + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in parts)


def validate_agent_config(*, kind: str, config: Any) -> dict[str, list[str]]:
    """Every problem with ``config`` for an agent of ``kind``, keyed by path; empty when valid."""
    if kind not in CONFIG_SCHEMAS:
        return {"kind": [f"Unknown kind {kind!r}: use one of {', '.join(AgentKind.values)}."]}
    if not isinstance(config, dict):
        return {"config": ["Give the configuration as a JSON object."]}
    errors: dict[str, list[str]] = {}
    validator = Draft202012Validator({**CONFIG_SCHEMAS[kind], "$defs": {"condition": _condition()}})
    for error in sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path)):
        errors.setdefault(_path(error), []).append(error.message)
    # the registry checks below run whatever the shape's problems: every error in one answer
    if kind == AgentKind.ROUTER and not errors:
        # the engine's own check, registered by runs at start-up: RE2 patterns, paths; the
        # same words as workflows
        for index, rule in enumerate(config.get("rules") or []):
            for pairs in hooks.condition_problems.call(rule["when"]):
                for rel, message in pairs:
                    errors.setdefault(f"config.rules[{index}].when{rel}", []).append(message)
    provider_slug = config.get("provider")
    if provider_slug and isinstance(provider_slug, str) and "config.provider" not in errors:
        provider = ProviderConnection.objects.filter(slug=provider_slug).first()
        if provider is None:
            errors["config.provider"] = [f"No provider {provider_slug!r} in this tenant."]
        elif provider.status != Status.ACTIVE:
            errors["config.provider"] = [f"Provider {provider_slug!r} is disabled."]
        elif provider.model_names and config.get("model") not in provider.model_names:
            errors["config.model"] = [
                f"Provider {provider_slug!r} has no model {config.get('model')!r}: use one of "
                f"{', '.join(provider.model_names)}."
            ]
        elif provider.kind == ProviderKind.SIMULATED and not config.get("model"):
            errors["config.model"] = ["Name a model (any name works for the simulator)."]
    secret = config.get("auth_secret")
    if secret and not Secret.objects.filter(name=secret).exists():
        errors["config.auth_secret"] = [f"No secret named {secret!r} in this tenant."]
    if kind == AgentKind.HTTP:
        problem = auth_format_problem(config.get("auth_format") or "{}")
        if problem:
            errors["config.auth_format"] = [problem]
        refused = egress.check_url(config["url"])
        if refused:
            errors["config.url"] = [refused]
    for key in ("output_schema", "response_schema"):
        if config.get(key):
            problems = validate_schema(config[key])
            if problems:
                errors[f"config.{key}"] = problems
    return errors
