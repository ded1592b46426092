"""The shared part of the adapters that call a vendor SDK (``openai_compat``,
``anthropic_provider``): one translation of the SDK's failures into ProviderErrors."""

from __future__ import annotations

import abc
import dataclasses
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from agents.providers.base import Adapter, ProviderError, connection_reason, endpoint, shorten
from controlplane import egress

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
        self._client: Any = None  # the SDK's client, made on first use

    @property
    def base_url(self) -> str:
        return self.provider.base_url or self.default_base_url

    @abc.abstractmethod
    def not_json(self) -> ProviderError:
        """The error for an answer that is not the API's JSON (usually a wrong base URL)."""

    @abc.abstractmethod
    def status_error(self, err: Any, model: str | None) -> ProviderError:
        """The error for the SDK's HTTP status exception ``err``."""

    def who(self) -> str:
        return f"{self.label.capitalize()} at {endpoint(self.base_url)}"

    def call(self, fn: Callable[[], Any], model: str | None) -> Any:
        """Run one SDK call and translate every way it can fail into a ProviderError."""
        sdk = self.sdk
        try:
            return fn()
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


def elapsed_ms(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.perf_counter()`` reading)."""
    return (time.perf_counter() - started) * 1000
