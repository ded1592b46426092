"""Fault-injection tests (marked ``reliability``): real workers, beat and server processes
against the pytest database and a private Redis, killed and cut off on purpose.

They start several processes each and measure recovery times, so they run in a serial
pytest invocation of their own (``make test-reliability``; ``make test`` runs them after
the main suite). Figures land in var/test/reliability.json and in the terminal summary.
"""

from __future__ import annotations

import json

import pytest

from tests.reliability.faults import Cluster, Ledger, record_figures

_FIGURES: dict[str, dict] = {}


@pytest.fixture
def cluster(transactional_db, tmp_path):
    """A private Redis and queue; start workers, beat and servers through it."""
    cluster = Cluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def ledger():
    server = Ledger()
    yield server
    server.close()


@pytest.fixture
def figures(request):
    """A dict the test fills with what it measured; saved and reported after the test."""
    data: dict = {}
    yield data
    if data:
        record_figures(request.node.name, data)
        _FIGURES[request.node.name] = data


def pytest_terminal_summary(terminalreporter):
    if not _FIGURES:
        return
    terminalreporter.section("reliability figures (var/test/reliability.json)")
    for name, data in _FIGURES.items():
        terminalreporter.write_line(f"{name}: {json.dumps(data, sort_keys=True)}")
