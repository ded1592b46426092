"""The overview page's runs section: figures aggregated in the database, pygal charts with
their summaries and tables, the time window (and a bad one), top failing agents and
tools, the empty states, and a query count that does not grow with the rows.

The generic page tests (anonymous, outsider, roles) are ``test_pages.TestOverviewPage``.
"""

from __future__ import annotations

import datetime
import json
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from runs.choices import RunStatus, StepStatus
from runs.models import Run, RunEvent, StepRun
from runs.overview import pick_window, window_bounds
from runs.stats import _SQLitePercentiles, percentile_cont
from tests.agents.registry_factories import make_agent
from tests.dashboard.test_pages import client_for, text
from tests.dashboard.test_run_pages import make_workflow

pytestmark = pytest.mark.django_db

URL = "/t/acme/"


def add_run(
    tenant,
    workflow=None,
    *,
    status: str = RunStatus.SUCCEEDED,
    ago: datetime.timedelta = datetime.timedelta(hours=1),
    seconds: float | None = 2.0,
    cost: str = "0.01",
    tokens: tuple[int, int] = (100, 20),
    failed_agent=None,
    failed_tool: str | None = None,
) -> Run:
    """A run created ``ago`` (and, with ``seconds``, finished that long after it started)."""
    created = timezone.now() - ago
    run = Run.objects.unscoped().create(
        tenant=tenant,
        workflow=workflow,
        workflow_version=workflow.current_version if workflow else None,
        definition={"steps": []},
        status=status,
        cost_usd=Decimal(cost),
        input_tokens=tokens[0],
        output_tokens=tokens[1],
    )
    fields = {"created_at": created}
    if seconds is not None:
        fields.update(started_at=created, finished_at=created + datetime.timedelta(seconds=seconds))
    Run.objects.unscoped().filter(pk=run.pk).update(**fields)
    if failed_agent is not None:
        step = StepRun.objects.unscoped().create(
            tenant=tenant,
            run=run,
            step_key="answer",
            step_type="agent",
            status=StepStatus.FAILED,
            agent_version=failed_agent.current_version,
        )
        StepRun.objects.unscoped().filter(pk=step.pk).update(created_at=created)
    if failed_tool is not None:
        event = RunEvent.objects.unscoped().create(
            tenant=tenant,
            run=run,
            seq=1,
            type="tool.call",
            step_key="answer",
            payload={"tool": failed_tool, "arguments": {}, "error": "it broke"},
        )
        RunEvent.objects.unscoped().filter(pk=event.pk).update(created_at=created)
        ok = RunEvent.objects.unscoped().create(
            tenant=tenant,
            run=run,
            seq=2,
            type="tool.call",
            payload={"tool": "always-fine", "arguments": {}, "result": 1},
        )
        RunEvent.objects.unscoped().filter(pk=ok.pk).update(created_at=created)
    return run


@pytest.fixture
def runs(world):
    """acme: 3 succeeded (1, 2, 3 s), 1 failed (4 s) in agent "flaky" and tool "kb-broken",
    1 running; globex: a failed run whose tool must not show up in acme."""
    workflow = make_workflow(world.acme)
    flaky = make_agent(world.acme, "flaky")
    for seconds in (1, 2, 3):
        add_run(world.acme, workflow, seconds=seconds, cost="0.25")
    add_run(
        world.acme,
        workflow,
        status=RunStatus.FAILED,
        seconds=4,
        failed_agent=flaky,
        failed_tool="kb-broken",
        cost="0.25",
    )
    add_run(world.acme, workflow, status=RunStatus.RUNNING, seconds=None, cost="0")
    add_run(world.globex, status=RunStatus.FAILED, failed_tool="globex-secret-tool")
    return workflow


def chart_svgs(body: str) -> list[str]:
    return re.findall(r'<figure class="chart" id="(chart-[a-z]+)">\s*<svg', body)


class TestFiguresAndCharts:
    def test_figures_come_from_the_tenants_runs(self, world, runs):
        body = text(client_for(world.bob).get(URL))
        stats = body.split('id="run-stats"')[1].split('<div class="charts">')[0]
        assert '<span class="num">5</span><span>runs started</span>' in stats
        assert '<span class="num">75.0%</span><span>success rate</span>' in stats
        assert "3 of 4 finished runs succeeded" in stats
        # percentile_cont over 1, 2, 3, 4 seconds
        assert '<span class="num">2.50 s</span><span>median duration (p50)</span>' in stats
        assert "95th percentile (p95): 3.85 s" in stats
        assert '<span class="num">$1.00</span><span>cost</span>' in stats
        assert "600 tokens: 500 in, 100 out" in stats
        assert "globex-secret-tool" not in body

    def test_five_pygal_charts_titled_described_and_script_free(self, world, runs):
        body = text(client_for(world.bob).get(URL))
        assert chart_svgs(body) == [
            "chart-status",
            "chart-runs",
            "chart-duration",
            "chart-cost",
            "chart-tokens",
        ]
        svgs = re.findall(r"<svg .*?</svg>", body, flags=re.S)
        assert len(svgs) == 5
        for svg in svgs:
            assert 'role="img"' in svg and 'class="pygal-chart"' in svg
            key = re.search(r'aria-labelledby="chart-title-(\w+) chart-desc-\1"', svg).group(1)
            assert f'<title id="chart-title-{key}">' in svg
            assert f'<desc id="chart-desc-{key}">' in svg
            assert "<script" not in svg
        status = svgs[0]
        assert "<title id" in status and ">Runs by status</title>" in status
        assert "5 runs: 1 running, 3 succeeded, 1 failed." in status  # the desc
        assert re.search(r"<rect [^>]*class=\"rect reactive tooltip-trigger\"", status)
        # beside the chart: the same figures in words and in a table
        figure = body.split('id="chart-status"')[1].split("</figure>")[0]
        assert "<figcaption>5 runs: 1 running, 3 succeeded, 1 failed.</figcaption>" in figure
        assert re.search(
            r'<span class="badge status-succeeded">Succeeded</span></td><td data-label="Runs">'
            r'<a href="/t/acme/runs/\?status=succeeded">3</a></td><td data-label="Share">60.0%',
            figure,
        )
        assert "Median 2.50 s, 95th percentile 3.85 s." in body
        assert "$1.00 in total; highest " in body
        assert "600 tokens (500 in, 100 out)." in body

    def test_runs_that_cost_nothing_draw_a_zero_series_not_no_runs(self, world):
        workflow = make_workflow(world.acme)
        for _ in range(3):  # simulated runs: free, no tokens
            add_run(world.acme, workflow, cost="0", tokens=(0, 0))
        body = text(client_for(world.bob).get(URL))
        cost = body.split('id="chart-cost"')[1].split("</figure>")[0]
        tokens = body.split('id="chart-tokens"')[1].split("</figure>")[0]
        for chart in (cost, tokens):
            assert "No runs in this window" not in chart
            assert 'class="no_data"' not in chart
        assert "$0.00" in cost

    def test_series_table_has_one_row_per_day(self, world, runs):
        body = text(client_for(world.bob).get(URL))
        table = body.split('id="series-table"')[1].split("</details>")[0]
        rows = re.findall(r'<tr><th scope="row">(\d{4}-\d{2}-\d{2})</th>', table)
        assert len(rows) == 14
        today = timezone.now().date().isoformat()
        assert rows[-1] == today
        assert "Day (UTC)" in table

    def test_top_failing_agents_and_tools(self, world, runs):
        body = text(client_for(world.bob).get(URL))
        agents = body.split('id="failing-agents"')[1].split("</table>")[0]
        assert '<a href="/t/acme/agents/flaky/">Agent</a> <code>flaky</code>' in agents
        assert '<td data-label="Failed steps">1</td><td data-label="Runs">1</td>' in agents
        tools = body.split('id="failing-tools"')[1].split("</table>")[0]
        assert "<code>kb-broken</code>" in tools
        assert "always-fine" not in tools  # its call succeeded
        assert '<a href="/t/acme/runs/?status=failed">Open the failed runs' in body


class TestWindow:
    @pytest.fixture
    def spread(self, world):
        workflow = make_workflow(world.acme)
        add_run(world.acme, workflow, ago=datetime.timedelta(days=3))
        add_run(world.acme, workflow, ago=datetime.timedelta(days=20))

    def stat_runs(self, body: str) -> int:
        return int(re.search(r'<span class="num">(\d+)</span><span>runs started', body).group(1))

    def test_windows_filter_the_runs(self, world, spread):
        client = client_for(world.bob)
        assert self.stat_runs(text(client.get(URL, {"window": "7d"}))) == 1
        assert self.stat_runs(text(client.get(URL, {"window": "30d"}))) == 2
        body = text(client.get(URL, {"window": "30d"}))
        assert '<a href="?window=30d" aria-current="true">Last 30 days</a>' in body
        assert len(re.findall(r'<tr><th scope="row">\d{4}-\d{2}-\d{2}</th>', body)) == 30

    def test_a_window_without_runs_says_so_and_offers_the_others(self, world, spread):
        body = text(client_for(world.bob).get(URL, {"window": "24h"}))
        empty = body.split('id="runs-empty"')[1].split("</p>")[0]
        assert "No run started in the last 24 hours." in empty
        assert '<a href="?window=30d">Last 30 days</a>' in empty
        assert "<svg" not in body

    def test_a_bad_window_falls_back_and_says_so(self, world, spread):
        response = client_for(world.bob).get(URL, {"window": "<b>1y</b>"})
        assert response.status_code == 200
        body = text(response)
        note = body.split('id="window-note"')[1].split("</p>")[0]
        assert "“&lt;b&gt;1y&lt;/b&gt;” is not a time window this page knows" in note
        assert "shows the last 14 days. Choose one of 24h, 7d, 14d, 30d." in note
        assert '<a href="?window=14d" aria-current="true">' in body
        assert self.stat_runs(body) == 1

    def test_hour_buckets_for_24h(self, world):
        workflow = make_workflow(world.acme)
        add_run(world.acme, workflow, ago=datetime.timedelta(minutes=5))
        body = text(client_for(world.bob).get(URL, {"window": "24h"}))
        hours = re.findall(r'<tr><th scope="row">(\d{4}-\d{2}-\d{2} \d{2}:00)</th>', body)
        assert len(hours) == 24
        assert "Hour (UTC)" in body and "Runs per hour" in body

    def test_bounds_are_whole_periods(self):
        now = datetime.datetime(2026, 5, 20, 15, 42, tzinfo=datetime.UTC)
        assert window_bounds("24h", now)[:2] == (
            datetime.datetime(2026, 5, 19, 16, 0, tzinfo=datetime.UTC),
            now,
        )
        assert window_bounds("7d", now)[0] == datetime.datetime(2026, 5, 14, tzinfo=datetime.UTC)
        assert pick_window(None) == ("14d", "")
        assert pick_window("30d") == ("30d", "")
        assert pick_window("x" * 50)[1].startswith("“" + "x" * 20 + "…”")


class TestEmptyState:
    def test_no_runs_offers_the_demo_workflow_to_an_operator(self, world):
        make_workflow(world.acme, slug="support-ticket", name="Support ticket")
        body = text(client_for(world.oscar).get(URL))
        empty = body.split('id="runs-empty"')[1].split("</div>")[0]
        assert "No runs yet." in empty
        assert (
            '<a class="button primary" href="/t/acme/workflows/support-ticket/start/">'
            "Start the demo “Support ticket” workflow</a>"
        ) in empty
        assert "<svg" not in body

    def test_a_viewer_is_sent_to_the_workflows(self, world):
        make_workflow(world.acme, slug="support-ticket", name="Support ticket")
        body = text(client_for(world.bob).get(URL))
        empty = body.split('id="runs-empty"')[1].split("</div>")[0]
        assert '<a class="button primary" href="/t/acme/workflows/">Open the workflows</a>' in empty
        assert "ask an operator" in empty

    def test_no_workflow_at_all(self, world):
        admin = text(client_for(world.adam).get(URL))
        assert 'href="/t/acme/workflows/new/">Create a workflow</a>' in admin
        assert "manage.py seed_demo" in admin
        viewer = text(client_for(world.bob).get(URL))
        assert "An operator or admin can load the demo with “manage.py seed_demo”." in viewer
        assert "✓ No agent step failed in the last 14 days." in viewer


def test_query_count_does_not_grow_with_runs(world):
    client = client_for(world.bob)
    workflow = make_workflow(world.acme)
    flaky = make_agent(world.acme, "flaky")
    add_run(world.acme, workflow, failed_agent=flaky, failed_tool="kb", status=RunStatus.FAILED)
    client.get(URL)  # warm caches (content types, permissions)
    with CaptureQueriesContext(connection) as few:
        assert client.get(URL).status_code == 200
    others = [make_agent(world.acme, f"agent-{i}") for i in range(6)]
    for i in range(40):
        add_run(
            world.acme,
            workflow,
            status=[RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED][i % 3],
            ago=datetime.timedelta(days=i % 12, hours=i),
            seconds=i + 1,
            failed_agent=others[(i // 3) % 6] if i % 3 == 1 else None,
            failed_tool=f"tool-{i % 7}" if i % 3 == 1 else None,
        )
    with CaptureQueriesContext(connection) as many:
        body = text(client.get(URL))
    assert len(chart_svgs(body)) == 5
    assert body.count('<tr><td><a href="/t/acme/agents/') == 5  # the top five of seven
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]


def test_sqlite_percentiles_interpolate_like_postgresql():
    agg = _SQLitePercentiles()
    for value in (4.0, None, 1.0, 3.0, 2.0):
        agg.step(value, "0.5,0.95")
    assert json.loads(agg.finalize()) == pytest.approx([2.5, 3.85])
    empty = _SQLitePercentiles()
    empty.step(None, "0.5")
    assert empty.finalize() is None
    assert percentile_cont([7.0], 0.95) == 7.0
