"""Budget values: limits, spend, reservations, the answer of a check, and the scopes. No queries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.utils import timezone

_MICRO = Decimal("0.000001")


def usd(value: float | Decimal) -> Decimal:
    """Dollars as the counters store them: a Decimal to the micro-dollar, half up."""
    return Decimal(str(value)).quantize(_MICRO, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Budget:
    """Hard and soft limits for one scope; None is no limit.

    Crossing a hard limit stops the call; crossing a soft limit asks for approval once.
    ``wall_seconds`` is elapsed time, checked but never reserved.
    """

    tokens: int | None = None
    cost_usd: float | None = None
    steps: int | None = None
    wall_seconds: float | None = None
    soft_tokens: int | None = None
    soft_cost_usd: float | None = None
    soft_steps: int | None = None

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value is not None and value < 0:
                raise ValueError(f"budget {name} must not be negative")


@dataclass(frozen=True)
class Spend:
    """Tokens, dollars and steps (a call that starts a step has ``steps=1``)."""

    tokens: int = 0
    cost_usd: float = 0.0
    steps: int = 0


@dataclass
class Reservation:
    """What ``reserve`` set aside; settle it exactly once with ``reconcile`` or ``release``."""

    tenant_id: int
    scopes: list[str]
    estimate: Spend
    settled: bool = field(default=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form, to keep with the step so a recovered worker can settle it."""
        return {
            "tenant_id": self.tenant_id,
            "scopes": list(self.scopes),
            "estimate": {
                "tokens": self.estimate.tokens,
                "cost_usd": self.estimate.cost_usd,
                "steps": self.estimate.steps,
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reservation:
        return cls(
            tenant_id=int(data["tenant_id"]),
            scopes=[str(s) for s in data["scopes"]],
            estimate=Spend(**data["estimate"]),
        )


@dataclass(frozen=True)
class BudgetCheck:
    """``ok``: go ahead, spend is reserved. Not ok and ``hard``: stop. Not ok and not hard:
    a soft limit was crossed (nothing reserved); ask for approval, then retry with the
    keys in ``soft_keys`` ("<scope>:<dimension>") acknowledged."""

    ok: bool
    hard: bool
    scope: str | None
    dimension: str | None
    reason: str
    reservation: Reservation | None
    soft_keys: tuple[str, ...] = ()

    @property
    def soft_key(self) -> str | None:
        return f"{self.scope}:{self.dimension}" if self.scope and self.dimension else None


def run_scope(run_id: int) -> str:
    """The budget scope of one run: ``run:<id>``."""
    return f"run:{run_id}"


def day_scope(now: datetime | None = None) -> str:
    """The budget scope of one UTC day for a tenant: ``day:YYYY-MM-DD`` (naive = UTC)."""
    now = now or timezone.now()
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return f"day:{now.astimezone(UTC).date().isoformat()}"
