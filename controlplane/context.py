"""Who is acting, for which tenant, in which request: one context per request or task.

Tenant-scoped managers read the tenant from here and refuse to query without
one; ``audit_record`` reads the actor, request id and address from here. The
values live in a ``ContextVar`` so threads and asyncio tasks each see their own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controlplane.api.models import ApiToken
    from controlplane.tenancy.models import Tenant


@dataclasses.dataclass(frozen=True)
class RequestContext:
    """The acting principal and request metadata; immutable, replaced with ``using``."""

    tenant: Tenant | None = None
    user: Any = None
    token: ApiToken | None = None
    request_id: str = ""
    ip: str | None = None
    system: str | None = None  # name of a system actor (a worker, a command)


_EMPTY = RequestContext()
_current: ContextVar[RequestContext] = ContextVar("controlplane_context", default=_EMPTY)


def current() -> RequestContext:
    return _current.get()


def current_tenant() -> Tenant | None:
    return _current.get().tenant


def new_request_id() -> str:
    return uuid.uuid4().hex


@contextlib.contextmanager
def using(**changes: Any) -> Iterator[RequestContext]:
    """Run a block with some context fields replaced; restores the previous context after."""
    ctx = dataclasses.replace(_current.get(), **changes)
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def tenant_context(tenant: Tenant) -> contextlib.AbstractContextManager[RequestContext]:
    """Scope tenant-scoped managers to ``tenant`` for the block."""
    return using(tenant=tenant)


def system_context(name: str, tenant: Tenant | None = None) -> contextlib.AbstractContextManager:
    """Act as a named system actor (a management command, a worker) rather than a person."""
    return using(tenant=tenant, user=None, token=None, system=name, request_id=new_request_id())


def set_context(ctx: RequestContext) -> Any:
    return _current.set(ctx)


def reset_context(token: Any) -> None:
    _current.reset(token)
