"""Strict parsing of the environment.

Every setting the product reads from the environment goes through one of these
functions. A value that does not parse stops start-up with an
``ImproperlyConfigured`` naming the variable and what it accepts, so a typo in
a deployment never turns into a silently different configuration.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from urllib.parse import urlparse

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class Env:
    """Typed accessors over a mapping of environment variables (``os.environ`` by default)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ

    def raw(self, name: str) -> str | None:
        value = self.environ.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def is_set(self, name: str) -> bool:
        return self.raw(name) is not None

    def str(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.raw(name)
        if value is None:
            if required:
                raise ImproperlyConfigured(f"{name} is required in this mode and is not set.")
            return default
        return value

    def bool(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a boolean: use one of true, false, 1, 0, yes, no, on, off."
        )

    def int(
        self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name}={value!r} is not an integer.") from None
        if minimum is not None and number < minimum:
            raise ImproperlyConfigured(f"{name}={number} is below the minimum of {minimum}.")
        if maximum is not None and number > maximum:
            raise ImproperlyConfigured(f"{name}={number} is above the maximum of {maximum}.")
        return number

    def list(self, name: str, default: list[str]) -> list[str]:
        value = self.raw(name)
        if value is None:
            return list(default)
        items = [item.strip() for item in value.split(",")]
        if any(item == "" for item in items):
            raise ImproperlyConfigured(
                f"{name}={value!r} has an empty item: give a comma-separated list such as "
                "'a.example.com,b.example.com'."
            )
        return items

    def choice(self, name: str, default: str, choices: list[str]) -> str:
        value = self.raw(name)
        if value is None:
            return default
        if value not in choices:
            raise ImproperlyConfigured(f"{name}={value!r} is not one of: {', '.join(choices)}.")
        return value

    def url(self, name: str, schemes: list[str]) -> str | None:
        value = self.raw(name)
        if value is None:
            return None
        parsed = urlparse(value)
        if parsed.scheme not in schemes or not (parsed.hostname or parsed.path):
            raise ImproperlyConfigured(
                f"{name} is not a valid URL: it must start with one of "
                f"{', '.join(s + '://' for s in schemes)} and name a host "
                f"(for example {schemes[0]}://127.0.0.1/)."
            )
        return value

    def networks(self, name: str, default: list[str]) -> list[str]:
        """A comma-separated list of IP networks in CIDR form (a bare address is one host)."""
        networks = self.list(name, default)
        for network in networks:
            try:
                ipaddress.ip_network(network, strict=True)
            except ValueError as exc:
                raise ImproperlyConfigured(
                    f"{name} item {network!r} is not a network: {exc}. Write CIDRs such as "
                    "10.0.0.0/8,127.0.0.1/32,::1/128."
                ) from None
        return networks

    def origins(self, name: str, default: list[str]) -> list[str]:
        origins = self.list(name, default)
        for origin in origins:
            parsed = urlparse(origin)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise ImproperlyConfigured(
                    f"{name} item {origin!r} is not an origin: write scheme and host, "
                    "such as https://control.example.com."
                )
        return origins
