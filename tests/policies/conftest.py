"""The tools these tests' policies name exist in both tenants: a policy naming a tool the
tenant does not have is refused (see ``policies.definition.validate_names``)."""

from __future__ import annotations

import pytest

NAMED_TOOLS = ("refund", "kb-search", "lookup")


@pytest.fixture(autouse=True)
def _named_tools(request):
    if "world" not in request.fixturenames:
        return
    from tests.agents.registry_factories import make_tool

    world = request.getfixturevalue("world")
    for tenant in (world.acme, world.globex):
        for slug in NAMED_TOOLS:
            make_tool(tenant, slug=slug)
