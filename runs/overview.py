"""The tenant's overview page, and what it shows of the runs: figures, charts, tables, empty states.

The figures come from ``runs.stats`` (a constant number of GROUP BY queries); this module
picks the window, formats the figures and draws the charts (``charts``). Every chart has a
one-line summary beside it and the numbers in a table, so nothing is read from colour.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Count
from django.urls import reverse
from django.utils import timezone

from controlplane.api.models import ApiToken
from controlplane.audit.models import AuditEvent
from controlplane.choices import Status
from controlplane.dashboard import charts
from controlplane.dashboard.pages import TenantPage
from controlplane.tenancy.choices import Role
from controlplane.tenancy.models import Membership
from runs.models import Run, Workflow
from runs.presenters import NONE, milliseconds, usd
from runs.stats import DEFAULT_WINDOW, WINDOWS, Overview, run_overview

DEMO_WORKFLOW = "support-ticket"


def pick_window(value: str | None) -> tuple[str, str]:
    """(window key, note): an unknown value falls back to the default and says so."""
    if value is None or value == "":
        return DEFAULT_WINDOW, ""
    if value in WINDOWS:
        return value, ""
    shown = value if len(value) <= 20 else value[:20] + "…"
    choices = ", ".join(WINDOWS)
    return DEFAULT_WINDOW, (
        f"“{shown}” is not a time window this page knows, so it shows the "
        f"{WINDOWS[DEFAULT_WINDOW][2].lower()}. Choose one of {choices}."
    )


def window_bounds(
    key: str, now: datetime.datetime | None = None
) -> tuple[datetime.datetime, datetime.datetime, str]:
    """(since, until, bucket): whole hours or whole days, so the buckets add up to the total."""
    length, bucket, _ = WINDOWS[key]
    now = now or timezone.now()
    if bucket == "hour":
        top = now.replace(minute=0, second=0, microsecond=0)
        return top - (length - datetime.timedelta(hours=1)), now, bucket
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - (length - datetime.timedelta(days=1)), now, bucket


def _seconds(value: datetime.timedelta | None) -> float | None:
    return round(value.total_seconds(), 3) if value is not None else None


def duration_text(value: datetime.timedelta | None) -> str:
    return milliseconds(value.total_seconds() * 1000) if value is not None else NONE


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else NONE


def _label(start: datetime.datetime, bucket: str) -> str:
    return start.strftime("%H:00") if bucket == "hour" else start.strftime("%b %d")


def _full_label(start: datetime.datetime, bucket: str) -> str:
    return start.strftime("%Y-%m-%d %H:00") if bucket == "hour" else start.strftime("%Y-%m-%d")


def _status_summary(o: Overview) -> str:
    parts = [f"{n} {label.lower()}" for _, label, n in o.by_status if n]
    return f"{o.runs} runs: " + ", ".join(parts) + "."


def _busiest(o: Overview, attr: str, fmt: Any) -> str:
    best = max(o.series, key=lambda b: getattr(b, attr))
    if not getattr(best, attr):
        return "none in any period"
    return f"highest {_full_label(best.start, o.bucket)} ({fmt(getattr(best, attr))})"


def _chart(draw: Any, *, summary: str, beside: str = "", **drawn: Any) -> dict[str, Any]:
    """A chart drawn by ``draw`` with its summary, and the line beside it (default: the same)."""
    return {"svg": draw(summary=summary, **drawn), "summary": beside or summary}


def _charts(o: Overview) -> dict[str, Any]:
    labels = [_label(b.start, o.bucket) for b in o.series]
    period = "hour" if o.bucket == "hour" else "day"
    statuses = [s for s in o.by_status if s[2]]
    finished = [b for b in o.series if b.p50 is not None]
    series = charts.series_chart
    durations = f"Median {duration_text(o.p50)}, 95th percentile {duration_text(o.p95)}"
    return {
        "status": _chart(
            charts.bar_by_category,
            title="Runs by status",
            summary=_status_summary(o),
            labels=[label for _, label, _ in statuses],
            values=[n for _, _, n in statuses],
            colours=[charts.STATUS_COLOURS.get(s, charts.COLOURS[0]) for s, _, _ in statuses],
        ),
        "runs": _chart(
            series,
            kind="stacked",
            title=f"Runs per {period}",
            summary=f"{o.runs} runs; {_busiest(o, 'runs', str)}.",
            labels=labels,
            series=[
                ("Succeeded", [b.succeeded or None for b in o.series]),
                ("Failed or timed out", [b.failed or None for b in o.series]),
                ("Other", [b.other or None for b in o.series]),
            ],
            colours=("#1a7f37", "#b42318", "#8c959f"),
        ),
        "duration": _chart(
            series,
            kind="line",
            title=f"Run duration per {period} (seconds)",
            summary=f"{durations} over {o.finished} finished runs; {len(finished)} {period}s "
            "had finished runs.",
            beside=f"{durations}.",
            labels=labels,
            series=[
                ("p50", [_seconds(b.p50) for b in o.series]),
                ("p95", [_seconds(b.p95) for b in o.series]),
            ],
            value_formatter=lambda v: f"{v:.2f} s",
            colours=("#0b5cad", "#9a6700"),
        ),
        "cost": _chart(
            series,
            kind="bar",
            title=f"Cost per {period} (USD)",
            summary=f"{usd(o.cost_usd)} in total; {_busiest(o, 'cost_usd', usd)}.",
            labels=labels,
            # a period with runs that cost nothing is $0, not a gap: simulated runs are free
            series=[("Cost (USD)", [float(b.cost_usd) if b.runs else None for b in o.series])],
            value_formatter=charts.usd_label,
            colours=("#6639ba",),
        ),
        "tokens": _chart(
            series,
            kind="stacked",
            title=f"Tokens per {period}",
            summary=f"{o.tokens:,} tokens ({o.input_tokens:,} in, {o.output_tokens:,} out).",
            labels=labels,
            series=[
                ("Input tokens", [b.input_tokens if b.runs else None for b in o.series]),
                ("Output tokens", [b.output_tokens if b.runs else None for b in o.series]),
            ],
            value_formatter=lambda v: f"{v:,.0f}",
            colours=("#0b5cad", "#9a6700"),
        ),
    }


def _next_step(tenant: Any, can: Any) -> dict[str, Any]:
    """What an empty tenant should do next: start the demo workflow, another one, or create one."""
    slug = tenant.slug
    may_start = can("runs.add_run")
    demo = Workflow.objects.filter(slug=DEMO_WORKFLOW, status=Status.ACTIVE).first()
    if demo is not None and may_start and can("runs.run_workflow", demo):
        return {
            "text": f"Start the demo “{demo.name}” workflow",
            "url": reverse("dashboard:workflow-start", kwargs={"tenant": slug, "slug": demo.slug}),
            "why": "It runs offline on the simulated provider and asks a person to approve a "
            "refund, so you see every part of a run.",
        }
    if Workflow.objects.exists():
        return {
            "text": "Open the workflows and start a run" if may_start else "Open the workflows",
            "url": reverse("dashboard:workflows", kwargs={"tenant": slug}),
            "why": "" if may_start else "Your role can look but not start runs; ask an operator.",
        }
    if can("runs.add_workflow"):
        return {
            "text": "Create a workflow",
            "url": reverse("dashboard:workflow-create", kwargs={"tenant": slug}),
            "why": "Or load the demo agents and workflows with “manage.py seed_demo”.",
        }
    return {
        "text": "",
        "url": "",
        "why": "An operator or admin can load the demo with “manage.py seed_demo”.",
    }


def overview_context(*, tenant: Any, can: Any, window: str | None) -> dict[str, Any]:
    """The runs part of the overview page's context."""
    key, note = pick_window(window)
    since, until, bucket = window_bounds(key)
    o = run_overview(since=since, until=until, bucket=bucket)
    data: dict[str, Any] = {
        "window": key,
        "window_label": WINDOWS[key][2],
        "window_note": note,
        "windows": [(k, label) for k, (_, _, label) in WINDOWS.items()],
        "stats": o,
        "success_rate": percent(o.succeeded, o.finished),
        "p50": duration_text(o.p50),
        "p95": duration_text(o.p95),
        "cost": usd(o.cost_usd),
        "tokens": f"{o.tokens:,} tokens: {o.input_tokens:,} in, {o.output_tokens:,} out",
        "status_rows": [
            {"status": s, "label": label, "runs": n, "share": percent(n, o.runs)}
            for s, label, n in o.by_status
        ],
        "series_rows": [
            {
                "label": _full_label(b.start, bucket),
                "bucket": b,
                "p50": duration_text(b.p50),
                "p95": duration_text(b.p95),
                "cost": usd(b.cost_usd) if b.cost_usd else usd(Decimal(0)),
            }
            for b in o.series
        ],
        "period": "Hour (UTC)" if bucket == "hour" else "Day (UTC)",
    }
    if o.runs:
        data["charts"] = _charts(o)
    else:
        data["any_runs"] = Run.objects.exists()
        if not data["any_runs"]:
            data["next_step"] = _next_step(tenant, can)
    return data


class OverviewPage(TenantPage):
    """The tenant's home page: its runs (when the member may see them), members, tokens, audit."""

    template_name = "runs/overview.html"
    permission_required = "tenancy.view_tenant"

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        roles = dict(Membership.objects.order_by().values_list("role").annotate(n=Count("id")))
        data["member_count"] = sum(roles.values())
        data["role_counts"] = {label: roles.get(value, 0) for value, label in Role.choices}
        if self.can("runs.view_run"):
            data.update(
                overview_context(
                    tenant=self.tenant, can=self.can, window=self.request.GET.get("window")
                )
            )
        if self.can("api.view_apitoken"):
            data["active_tokens"] = ApiToken.objects.filter(revoked_at__isnull=True).count()
        if self.can("audit.view_auditevent"):
            data["recent_events"] = list(AuditEvent.objects.order_by("-seq")[:10])
        return data
