"""Selectors of the overview: what the tenant's runs did in a time window, aggregated in the
database.

Every figure comes from five GROUP BY queries (per hour or day: counts per status with
costs and tokens, then duration percentiles; the window's percentiles; top failing
agents; top failing tools), so the number of queries never depends on how many runs there
are. Callers set the tenant context first: the tenant-scoped managers refuse to query
without one.

Durations are exact percentiles of ``finished_at - started_at`` over runs that finished:
``percentile_cont`` on PostgreSQL, the same interpolation registered as an aggregate
function on SQLite (embedded mode).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from decimal import Decimal
from typing import Any

from django.db.models import Aggregate, Count, F, Field, FloatField, Func, Max, Q, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import TruncDay, TruncHour

from runs.choices import TERMINAL_RUN_STATUSES, RunStatus, StepStatus
from runs.models import Run, RunEvent, StepRun

TOP_FAILING = 5

# how long each window is and how its series is bucketed
WINDOWS: dict[str, tuple[datetime.timedelta, str, str]] = {
    "24h": (datetime.timedelta(hours=24), "hour", "Last 24 hours"),
    "7d": (datetime.timedelta(days=7), "day", "Last 7 days"),
    "14d": (datetime.timedelta(days=14), "day", "Last 14 days"),
    "30d": (datetime.timedelta(days=30), "day", "Last 30 days"),
}
DEFAULT_WINDOW = "14d"


# durations and their percentiles -----------------------------------------------------------


class DurationSeconds(Func):
    """``finished_at - started_at`` in seconds (a float; NULL until both are set).

    A float sorts faster than an interval, and both columns are in the overview's index.
    """

    output_field = FloatField()

    def __init__(self, **extra: Any):
        super().__init__(F("finished_at"), F("started_at"), **extra)

    def as_postgresql(self, compiler, connection, **extra_context):
        return self.as_sql(
            compiler,
            connection,
            template="(DATE_PART('epoch', %(expressions)s))",
            arg_joiner=") - DATE_PART('epoch', ",
            **extra_context,
        )

    def as_sqlite(self, compiler, connection, **extra_context):
        return self.as_sql(
            compiler,
            connection,
            # Django registers this function on every SQLite connection: microseconds, exact
            template="(django_timestamp_diff(%(expressions)s) / 1000000.0)",
            **extra_context,
        )


class _Floats(Field):
    """A list of floats from an aggregate: a PostgreSQL array, or JSON text from SQLite."""

    def get_internal_type(self) -> str:
        return "TextField"  # no backend converter: from_db_value does it all

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        if isinstance(value, str):
            value = json.loads(value)
        return [None if v is None else float(v) for v in value]


def percentile_cont(values: list[float], fraction: float) -> float | None:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    if not values:
        return None
    position = fraction * (len(values) - 1)
    low, high = math.floor(position), math.ceil(position)
    return values[low] + (values[high] - values[low]) * (position - low)


class _SQLitePercentiles:
    """``CP_PERCENTILES(value, '0.5,0.95')``: percentile_cont of each fraction, as JSON."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.fractions = ""

    def step(self, value: Any, fractions: str) -> None:
        self.fractions = fractions
        if value is not None:
            self.values.append(value)

    def finalize(self) -> str | None:
        if not self.values:
            return None
        values = sorted(self.values)
        fractions = [float(f) for f in self.fractions.split(",")]
        return json.dumps([percentile_cont(values, f) for f in fractions])


class Percentiles(Aggregate):
    """Several percentiles of an expression in one sort (NULLs ignored): a list of floats."""

    function = "CP_PERCENTILES"
    template = "%(function)s(%(expressions)s, '%(fractions)s')"
    allow_distinct = False

    def __init__(self, expression: Any, fractions: tuple[float, ...], **extra: Any):
        # floats only (repr of a float is digits, a dot, an exponent): safe inside the SQL
        text = ",".join(repr(float(f)) for f in fractions)
        super().__init__(expression, fractions=text, output_field=_Floats(), **extra)

    def as_postgresql(self, compiler, connection, **extra_context):
        return self.as_sql(
            compiler,
            connection,
            template=(
                "percentile_cont(ARRAY[%(fractions)s]::float8[]) "
                "WITHIN GROUP (ORDER BY %(expressions)s)"
            ),
            **extra_context,
        )

    def as_sqlite(self, compiler, connection, **extra_context):
        connection.ensure_connection()
        # registering again is harmless; a new connection (thread, reconnect) needs it
        connection.connection.create_aggregate("CP_PERCENTILES", 2, _SQLitePercentiles)
        return self.as_sql(compiler, connection, **extra_context)


FRACTIONS = (0.5, 0.95)


def _seconds(value: float | None) -> datetime.timedelta | None:
    return datetime.timedelta(seconds=value) if value is not None else None


def _p50_p95(values: list[float | None] | None) -> tuple[Any, Any]:
    p50, p95 = values or (None, None)
    return _seconds(p50), _seconds(p95)


# the figures -------------------------------------------------------------------------------


@dataclasses.dataclass
class Bucket:
    """One hour or day of the series."""

    start: datetime.datetime
    runs: int = 0
    succeeded: int = 0
    failed: int = 0  # failed or timed out
    cost_usd: Decimal = Decimal(0)
    input_tokens: int = 0
    output_tokens: int = 0
    p50: datetime.timedelta | None = None
    p95: datetime.timedelta | None = None

    @property
    def other(self) -> int:
        return self.runs - self.succeeded - self.failed


@dataclasses.dataclass
class Failing:
    """An agent or a tool with its failures in the window."""

    slug: str
    name: str
    failures: int
    runs: int
    last_at: datetime.datetime | None


@dataclasses.dataclass
class Overview:
    since: datetime.datetime
    until: datetime.datetime
    bucket: str  # "hour" or "day"
    by_status: list[tuple[str, str, int]]  # (status, label, runs), every status in order
    runs: int
    finished: int  # succeeded, failed, cancelled or timed out
    succeeded: int
    cost_usd: Decimal
    input_tokens: int
    output_tokens: int
    p50: datetime.timedelta | None
    p95: datetime.timedelta | None
    series: list[Bucket]
    failing_agents: list[Failing]
    failing_tools: list[Failing]

    @property
    def success_rate(self) -> float | None:
        """Succeeded share of the runs that finished (None when none finished)."""
        return self.succeeded / self.finished if self.finished else None

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


FAILED_RUN_STATUSES = (RunStatus.FAILED, RunStatus.TIMED_OUT)


def _buckets(since: datetime.datetime, until: datetime.datetime, bucket: str) -> list[Bucket]:
    step = datetime.timedelta(hours=1) if bucket == "hour" else datetime.timedelta(days=1)
    start = since.replace(minute=0, second=0, microsecond=0)
    if bucket == "day":
        start = start.replace(hour=0)
    out = []
    while start <= until:
        out.append(Bucket(start=start))
        start += step
    return out


def run_overview(*, since: datetime.datetime, until: datetime.datetime, bucket: str) -> Overview:
    """Runs created in ``[since, until]`` of the current tenant, in five queries.

    Per hour or day: a count per status, costs and tokens (hashed, no sort; the window's
    totals are their sums), then duration percentiles, then the window's own percentiles;
    then the top failing agents and tools. On PostgreSQL the three run queries read only
    the ``run_tenant_created`` index.
    """
    runs = Run.objects.filter(created_at__gte=since, created_at__lte=until).order_by()
    trunc = TruncHour if bucket == "hour" else TruncDay
    # count a column of the index (not id): PostgreSQL then reads the index alone
    per_status = {
        f"n_{value}": Count("created_at", filter=Q(status=value)) for value, _ in RunStatus.choices
    }
    rows = (
        runs.annotate(bucket=trunc("created_at"))
        .values("bucket")
        .annotate(
            **per_status,
            cost=Sum("cost_usd"),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
        )
    )
    finished = runs.filter(started_at__isnull=False, finished_at__isnull=False)
    durations = {
        row["bucket"]: _p50_p95(row["p"])
        for row in finished.annotate(bucket=trunc("created_at"))
        .values("bucket")
        .annotate(p=Percentiles(DurationSeconds(), FRACTIONS))
    }
    p50, p95 = _p50_p95(finished.aggregate(p=Percentiles(DurationSeconds(), FRACTIONS))["p"])

    series = _buckets(since, until, bucket)
    by_start = {b.start: b for b in series}
    counts = dict.fromkeys(RunStatus.values, 0)
    for row in rows:
        b = by_start.get(row["bucket"])
        if b is None:  # outside the filled range (clock skew): add it rather than drop it
            b = by_start[row["bucket"]] = Bucket(start=row["bucket"])
            series.append(b)
        for value in RunStatus.values:
            counts[value] += row[f"n_{value}"]
        b.runs = sum(row[f"n_{value}"] for value in RunStatus.values)
        b.succeeded = row[f"n_{RunStatus.SUCCEEDED}"]
        b.failed = sum(row[f"n_{value}"] for value in FAILED_RUN_STATUSES)
        b.cost_usd = row["cost"] or Decimal(0)
        b.input_tokens, b.output_tokens = row["input_tokens"] or 0, row["output_tokens"] or 0
        b.p50, b.p95 = durations.get(row["bucket"], (None, None))
    series.sort(key=lambda b: b.start)

    return Overview(
        since=since,
        until=until,
        bucket=bucket,
        by_status=[(value, label, counts[value]) for value, label in RunStatus.choices],
        runs=sum(counts.values()),
        finished=sum(counts[s] for s in TERMINAL_RUN_STATUSES),
        succeeded=counts[RunStatus.SUCCEEDED],
        cost_usd=sum((b.cost_usd for b in series), Decimal(0)),
        input_tokens=sum(b.input_tokens for b in series),
        output_tokens=sum(b.output_tokens for b in series),
        p50=p50,
        p95=p95,
        series=series,
        failing_agents=failing_agents(since=since, until=until),
        failing_tools=failing_tools(since=since, until=until),
    )


def failing_agents(
    *, since: datetime.datetime, until: datetime.datetime, limit: int = TOP_FAILING
) -> list[Failing]:
    """Agents whose steps failed most often in the window (one query; partial index)."""
    rows = (
        StepRun.objects.filter(
            status=StepStatus.FAILED,
            created_at__gte=since,
            created_at__lte=until,
            agent_version__isnull=False,
        )
        .order_by()
        .values(slug=F("agent_version__agent__slug"), name=F("agent_version__agent__name"))
        .annotate(failures=Count("id"), runs=Count("run_id", distinct=True), last=Max("updated_at"))
        .order_by("-failures", "slug")[:limit]
    )
    return [Failing(r["slug"], r["name"], r["failures"], r["runs"], r["last"]) for r in rows]


def failing_tools(
    *, since: datetime.datetime, until: datetime.datetime, limit: int = TOP_FAILING
) -> list[Failing]:
    """Tools whose calls failed most often in the window, from the runs' ``tool.call`` events."""
    rows = (
        RunEvent.objects.filter(
            type="tool.call",
            payload__has_key="error",
            created_at__gte=since,
            created_at__lte=until,
        )
        .order_by()
        .annotate(tool=KT("payload__tool"))
        .values("tool")
        .annotate(failures=Count("id"), runs=Count("run_id", distinct=True), last=Max("created_at"))
        .order_by("-failures", "tool")[:limit]
    )
    return [
        Failing(r["tool"] or "?", r["tool"] or "?", r["failures"], r["runs"], r["last"])
        for r in rows
    ]
