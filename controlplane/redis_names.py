"""Names in Redis (keys, pub/sub channels) that belong to this installation.

Installations and test databases may share one Redis server, and pub/sub channels are not
even separated by Redis database number: every name the product uses there carries the
name of its PostgreSQL database, so two installations whose tenant, provider or run ids
coincide never share a rate-limit bucket, a provider slot or a run-ended announcement.
"""

from __future__ import annotations

from django.conf import settings


def installation() -> str:
    """This installation's part of a Redis name: its database's name."""
    name = str(settings.DATABASES["default"].get("NAME") or "default")
    return name.rsplit("/", 1)[-1]


def redis_name(kind: str, *parts: object) -> str:
    """``cp:<kind>:<installation>[:part...]``."""
    return ":".join(["cp", kind, installation(), *map(str, parts)])
