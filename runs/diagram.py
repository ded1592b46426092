"""The workflow's step graph drawn as SVG: steps in layers by depth of their needs (top to
bottom), an arrow from each step to the steps that need it, a dashed arrow with the route's
name from a router to a step only that route enables.

Pure layout over ``presenters.Graph`` (no queries); the template draws the boxes. The
text list beside it (``_graph.html``) says the same in words, for screen readers and
narrow screens.
"""

from __future__ import annotations

import dataclasses

from runs.presenters import Graph, GraphStep

NODE_W, NODE_H = 190, 58
GAP_X, GAP_Y = 28, 56
PAD = 16
MAX_STEPS = 80  # larger graphs are listed, not drawn
ID_CHARS, DOES_CHARS = 22, 26


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


@dataclasses.dataclass
class Node:
    step: GraphStep
    x: int
    y: int

    @property
    def label(self) -> str:
        return _clip(self.step.id, ID_CHARS)

    @property
    def kind(self) -> str:
        return _clip(f"{self.step.type} · {self.step.does}", DOES_CHARS)

    @property
    def cx(self) -> int:
        return self.x + NODE_W // 2


@dataclasses.dataclass
class Edge:
    path: str  # an SVG path from the bottom of one box to the top of another
    route: str  # the route's name on a router's dashed edge, else ""
    label_x: float = 0
    label_y: float = 0
    source: str = ""
    target: str = ""


@dataclasses.dataclass
class Diagram:
    width: int
    height: int
    nodes: list[Node]
    edges: list[Edge]
    node_w: int = NODE_W
    node_h: int = NODE_H


def _curve(a: Node, b: Node) -> tuple[str, float, float]:
    """The arrow's SVG path and where its label goes."""
    x1, y1 = a.cx, a.y + NODE_H
    x2, y2 = b.cx, b.y
    if y2 <= y1 or y2 - y1 > GAP_Y:  # upwards, same layer or past other layers: go round
        x1, y1 = a.x + NODE_W, a.y + NODE_H // 2
        x2, y2 = b.x + NODE_W, b.y + NODE_H // 2
        bend = max(x1, x2) + GAP_X
        path = f"M{x1},{y1} C{bend},{y1} {bend},{y2} {x2},{y2}"
        return path, max(x1, x2) + GAP_X * 0.75, (y1 + y2) / 2
    mid = (y1 + y2) / 2
    return f"M{x1},{y1} C{x1},{mid} {x2},{mid} {x2},{y2 - 2}", (x1 + x2) / 2, mid


def _edge(a: Node, b: Node, route: str = "") -> Edge:
    path, x, y = _curve(a, b)
    return Edge(path, route, label_x=x, label_y=y, source=a.step.id, target=b.step.id)


def layout(graph: Graph) -> Diagram | None:
    """Boxes and arrows of ``graph``, or None when it is empty or too large to draw."""
    count = sum(len(layer) for layer in graph.layers)
    if not count or count > MAX_STEPS:
        return None
    widest = max(len(layer) for layer in graph.layers)
    width = PAD * 2 + widest * NODE_W + (widest - 1) * GAP_X + GAP_X  # room for side arrows
    height = PAD * 2 + len(graph.layers) * NODE_H + (len(graph.layers) - 1) * GAP_Y
    nodes: dict[str, Node] = {}
    for depth, layer in enumerate(graph.layers):
        row = len(layer) * NODE_W + (len(layer) - 1) * GAP_X
        left = (width - GAP_X - row) // 2
        for i, step in enumerate(layer):
            nodes[step.id] = Node(
                step=step, x=left + i * (NODE_W + GAP_X), y=PAD + depth * (NODE_H + GAP_Y)
            )
    edges: dict[tuple[str, str], Edge] = {}
    for node in nodes.values():
        for need in node.step.needs:
            if need in nodes:
                edges[need, node.step.id] = _edge(nodes[need], node)
    for node in nodes.values():
        for route, targets in node.step.routes:
            for target in targets:
                if target not in nodes:
                    continue
                key = (node.step.id, target)
                if key in edges:  # the step also needs the router: name the route on that arrow
                    edges[key].route = route
                else:
                    edges[key] = _edge(node, nodes[target], route)
    return Diagram(
        width=width, height=height, nodes=list(nodes.values()), edges=list(edges.values())
    )
