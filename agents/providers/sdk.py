"""The shared part of the adapters that call a vendor SDK (``openai_compat``,
``anthropic_provider``): one translation of the SDK's failures into ProviderErrors, and
the SDKs' async clients, shared by every call in the process.

Every call runs as a coroutine on the process's I/O loop (``controlplane.aio``): a step
waiting on its model holds no thread in a socket and no database connection, and a
cancelled or timed-out step closes the request at once. One client per provider
configuration is kept (``shared_client``) so calls reuse their HTTP connections.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import dataclasses
import json
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings

from agents.providers.base import Adapter, ProviderError, connection_reason, endpoint, shorten
from agents.providers.slots import provider_slot
from controlplane import aio, egress

if TYPE_CHECKING:
    from agents.models import ProviderConnection


@dataclasses.dataclass(frozen=True)
class SdkErrors:
    """The exception classes of a vendor SDK (``name``: "OpenAI", "Anthropic"), most specific
    first: a timeout is also a connection error in both SDKs."""

    name: str
    timeout: type[Exception]
    connection: type[Exception]
    status: type[Exception]
    response_validation: type[Exception]
    any: type[Exception]


class SdkAdapter(Adapter):
    """An adapter calling a vendor SDK's client at ``base_url``: every way an SDK call can
    fail becomes a ProviderError the same way, naming the provider and what to check.

    A subclass names its ``sdk``, its ``default_base_url``, what a body that is not the API's JSON
    means (``not_json``) and how to read an HTTP error status (``status_error``).
    """

    sdk: ClassVar[SdkErrors]
    default_base_url: ClassVar[str]  # when the provider names none

    def __init__(self, provider: ProviderConnection):
        super().__init__(provider)
        # called (in the step's thread) when a call must wait for a free provider slot
        self.on_slot_wait: Callable[[], None] | None = None

    @property
    def base_url(self) -> str:
        return self.provider.base_url or self.default_base_url

    @abc.abstractmethod
    def not_json(self) -> ProviderError:
        """The error for an answer that is not the API's JSON (usually a wrong base URL)."""

    @abc.abstractmethod
    def status_error(self, err: Any, model: str | None) -> ProviderError:
        """The error for the SDK's HTTP status exception ``err``."""

    async def _in_slot(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        provider = self.provider
        if provider.pk is None:  # a connection test of a provider not saved yet
            return await fn()
        waiting = self.on_slot_wait
        async with provider_slot(
            provider.pk,
            provider.max_concurrency,
            holder=f"{socket.gethostname()}:{os.getpid()}",
            on_wait=(lambda: aio.in_caller(waiting)) if waiting is not None else None,
        ):
            return await fn()

    def who(self) -> str:
        return f"{self.label.capitalize()} at {endpoint(self.base_url)}"

    def sdk_client(self, client_cls: type, http_client_cls: type, api_key: str) -> Any:
        """The process's async client of this SDK for the provider (``shared_client``): no
        retries (the engine owns them), the provider's timeout, and every connection,
        redirect and retry through the egress guard."""
        return shared_client(
            self.client_key(),
            lambda: client_cls(
                base_url=self.base_url,
                api_key=api_key,
                timeout=float(self.provider.timeout_seconds),
                max_retries=0,
                http_client=http_client_cls(
                    transport=egress.httpx2_async_transport(settings.PROVIDER_MAX_CONNECTIONS)
                ),
            ),
        )

    def client_key(self) -> tuple[Any, ...]:
        """What makes two providers' clients interchangeable (the key is part of it)."""
        return (
            type(self).__name__,
            self.base_url,
            self.api_key(),
            float(self.provider.timeout_seconds),
        )

    def call(self, fn: Callable[[], Awaitable[Any]], model: str | None) -> Any:
        """Run one SDK call on the I/O loop, inside one of the provider's concurrency slots
        (``max_concurrency``); translate every way it can fail into a ProviderError."""
        sdk = self.sdk
        try:
            return aio.run(lambda: self._in_slot(fn))
        except ProviderError:
            raise
        except egress.EgressRefused as err:
            raise self.refused(err) from None
        except sdk.timeout:
            raise self.error(
                f"{self.who()} did not answer in time. Retry, or raise the timeout "
                f"(now {self.provider.timeout_seconds} s).",
                retryable=True,
            ) from None
        except sdk.connection as err:
            refused = egress.refused_in(err)
            if refused is not None:
                raise self.refused(refused) from None
            raise self.error(
                f"Could not reach {self.label} at {endpoint(self.base_url)}: "
                f"{connection_reason(err)}.",
                retryable=True,
            ) from None
        except sdk.status as err:
            raise self.status_error(err, model) from None
        except sdk.response_validation:
            raise self.error(
                f"{self.who()} answered in a shape the {sdk.name} SDK does not understand."
            ) from None
        except json.JSONDecodeError:
            # The body was labelled JSON but did not parse.
            raise self.not_json() from None
        except (sdk.any, ValueError) as err:
            raise self.error(f"The {sdk.name} SDK refused the call: {shorten(str(err))}") from None


_clients_lock = threading.Lock()
_clients: collections.OrderedDict[tuple[Any, ...], Any] = collections.OrderedDict()


def shared_client(key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
    """The process's async SDK client for ``key``, made on first use; the least recently used
    is closed when more than ``PROVIDER_CLIENTS_CACHED`` are kept."""
    key = (os.getpid(), *key)
    with _clients_lock:
        client = _clients.get(key)
        if client is not None:
            _clients.move_to_end(key)
            return client
        client = _clients[key] = make()
        evicted = []
        while len(_clients) > settings.PROVIDER_CLIENTS_CACHED:
            evicted.append(_clients.popitem(last=False)[1])
    for old in evicted:
        # closed on the loop, after the calls already using it have their answers
        aio.loop().call_soon_threadsafe(asyncio.ensure_future, old.close())
    return client


def elapsed_ms(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.perf_counter()`` reading)."""
    return (time.perf_counter() - started) * 1000
