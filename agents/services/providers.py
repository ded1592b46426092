"""Model provider writes: register, edit, record a connection test. Keys are never echoed."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from agents.choices import ProviderKind
from agents.models import ProviderConnection
from controlplane import egress
from controlplane.entities import Entity

PROVIDERS = Entity(
    ProviderConnection,
    "provider",
    fields=(
        "slug",
        "name",
        "description",
        "kind",
        "base_url",
        "api_key_env",
        "models",
        "timeout_seconds",
        "max_concurrency",
        "tags",
        "status",
    ),
    clean_exclude=("api_key",),
    keep_when_none=("api_key",),
)


def _validate_models(models: Any) -> list[dict[str, Any]]:
    if not isinstance(models, list):
        raise ValidationError(
            {
                "models": 'Give a list of models, e.g. [{"name": "gpt-4o-mini", '
                '"input_per_mtok": 0.15, "output_per_mtok": 0.6}].'
            }
        )
    cleaned, seen = [], set()
    for index, entry in enumerate(models):
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or not str(entry.get("name", "")).strip():
            raise ValidationError({"models": f"Item {index}: give an object with a 'name'."})
        name = str(entry["name"]).strip()
        if name in seen:
            raise ValidationError({"models": f"Item {index}: model {name!r} is listed twice."})
        seen.add(name)
        prices = {}
        for key in ("input_per_mtok", "output_per_mtok"):
            value = entry.get(key, 0)
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ValidationError(
                    {
                        "models": f"Item {index}: {key} must be a number >= 0 "
                        "(USD per million tokens)."
                    }
                )
            prices[key] = float(value)
        cleaned.append({"name": name, **prices})
    return cleaned


def _check_provider(provider: ProviderConnection) -> None:
    if provider.kind in (ProviderKind.OPENAI,) and not provider.base_url:
        provider.base_url = "https://api.openai.com/v1"
    if provider.kind == ProviderKind.SIMULATED and (provider.api_key or provider.base_url):
        raise ValidationError({"kind": "The simulated provider takes no base URL or API key."})
    refused = egress.check_url(provider.base_url) if provider.base_url else None
    if refused:
        raise ValidationError({"base_url": refused})
    PROVIDERS.clean(provider)


@transaction.atomic
def provider_create(
    *, tenant: Any, slug: str, name: str, kind: str, models: Any = (), **fields: Any
) -> ProviderConnection:
    """Register a model provider; the key is stored encrypted and never echoed.

    Other fields: description, base_url, api_key, api_key_env, timeout_seconds,
    max_concurrency, tags, status (the model's defaults where left out or None).
    """
    provider = PROVIDERS.new(
        tenant=tenant,
        slug=slug,
        name=name,
        kind=kind,
        models=_validate_models(list(models) if isinstance(models, tuple) else models),
        **fields,
    )
    return PROVIDERS.create(
        provider,
        check=_check_provider,
        metadata={"api_key": "set" if provider.api_key else "not set"},
    )


@transaction.atomic
def provider_update(*, provider: ProviderConnection, **changes: Any) -> ProviderConnection:
    """Edit a provider. ``api_key=None`` keeps the stored key; ``""`` clears it."""
    key_changed = "api_key" in changes and changes["api_key"] is not None
    if "models" in changes:
        changes["models"] = _validate_models(changes["models"])
    return PROVIDERS.update(
        provider,
        changes,
        check=_check_provider,
        metadata={"api_key": "changed"} if key_changed else {},
    )


@transaction.atomic
def provider_record_test(
    *, provider: ProviderConnection, ok: bool, message: str, latency_ms: float
) -> ProviderConnection:
    """Store the outcome of a connection test (the call itself happens outside any transaction)."""
    ProviderConnection.objects.filter(pk=provider.pk).update(
        last_test_at=timezone.now(), last_test_ok=ok, last_test_message=message[:2000]
    )
    provider.refresh_from_db()
    PROVIDERS.record(
        "test",
        provider,
        metadata={"ok": ok, "message": message[:500], "latency_ms": round(latency_ms, 1)},
    )
    return provider
