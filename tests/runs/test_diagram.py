"""The workflow graph's SVG layout (``runs.diagram``): layers by depth of needs, arrows from
a need to the step needing it, routes named on their arrows, and no drawing when there is
nothing (or too much) to draw."""

from __future__ import annotations

from runs.diagram import GAP_Y, MAX_STEPS, NODE_H, NODE_W, layout
from runs.presenters import step_graph


def test_layers_by_depth_and_arrows_from_needs():
    graph = step_graph(
        {
            "steps": [
                {"id": "a", "type": "tool", "tool": "t"},
                {"id": "b", "type": "agent", "agent": "x", "needs": ["a"]},
                {"id": "c", "type": "agent", "agent": "y", "needs": ["a"]},
                {"id": "d", "type": "approval", "needs": ["b", "c"]},
            ]
        }
    )
    diagram = layout(graph)
    at = {n.step.id: (n.x, n.y) for n in diagram.nodes}
    assert at["a"][1] < at["b"][1] == at["c"][1] < at["d"][1]
    assert at["b"][0] + NODE_W < at["c"][0]  # side by side, not overlapping
    assert at["d"][1] - at["b"][1] == NODE_H + GAP_Y
    assert all(x >= 0 and x + NODE_W <= diagram.width for x, _ in at.values())
    assert sorted((e.source, e.target, e.route) for e in diagram.edges) == [
        ("a", "b", ""),
        ("a", "c", ""),
        ("b", "d", ""),
        ("c", "d", ""),
    ]
    assert diagram.nodes[0].kind == "tool · tool t"


def test_a_route_to_a_step_further_down_goes_round_the_side():
    graph = step_graph(
        {
            "steps": [
                {"id": "r", "type": "router", "routes": {"urgent": ["x"]}},
                {"id": "y", "type": "agent", "agent": "q"},
                {"id": "x", "type": "agent", "agent": "z", "needs": ["y"]},
            ]
        }
    )
    edges = {(e.source, e.target): e for e in layout(graph).edges}
    assert edges["r", "x"].route == "urgent"
    start = edges["r", "x"].path.split()[0]
    assert start == f"M{16 + NODE_W},{16 + NODE_H // 2}"  # from the router's right side
    assert edges["r", "y"].route == ""  # written order: y needs r


def test_nothing_or_too_much_is_not_drawn():
    assert layout(step_graph({"steps": []})) is None
    many = [{"id": f"s{i}", "type": "approval"} for i in range(MAX_STEPS + 1)]
    assert layout(step_graph({"steps": many})) is None
    long_ids = layout(step_graph({"steps": [{"id": "x" * 40, "type": "approval"}]}))
    assert long_ids.nodes[0].label == "x" * 21 + "…"
