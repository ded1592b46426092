"""Server-side SVG charts of the dashboard, drawn by pygal (no JavaScript).

Each chart is returned as inline SVG markup with a ``<title>`` and a ``<desc>`` (the
text summary a screen reader reads), ``role="img"`` and pygal's script removed. The page
shows the same figures as a table beside the chart, so no value depends on colour alone.
"""

from __future__ import annotations

import math
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

import pygal
from django.utils.safestring import SafeString, mark_safe
from pygal.style import Style

# one colour per series, readable on white; series are also named in the legend and tables
COLOURS = ("#0b5cad", "#b42318", "#8c959f", "#1a7f37", "#9a6700", "#6639ba")
STATUS_COLOURS = {
    "queued": "#8c959f",
    "running": "#0b5cad",
    "waiting": "#9a6700",
    "succeeded": "#1a7f37",
    "failed": "#b42318",
    "cancelled": "#57606a",
    "timed_out": "#82071e",
}

STYLE = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#1b1f24",
    foreground_strong="#1b1f24",
    foreground_subtle="#d0d7de",
    font_family='system-ui, -apple-system, "Segoe UI", sans-serif',
    label_font_size=13,
    major_label_font_size=13,
    value_font_size=13,
    legend_font_size=12,
    title_font_size=17,
    no_data_font_size=16,  # pygal's 64 px message does not fit a 480 px chart
    colors=COLOURS,
)

WIDTH, HEIGHT = 480, 300  # small enough that the text stays readable on a phone
MAX_X_LABELS = 7  # time labels shown unrotated; every bucket is still in the table


def usd_label(value: float) -> str:
    """$1,234.50, $0.24, $0.0012: short axis labels for costs (models can be cheap)."""
    if value >= 0.01 or value == 0:
        return f"${value:,.2f}"
    return f"${value:.2g}"


def _options(title: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": title,
        "style": STYLE,
        "width": WIDTH,
        "height": HEIGHT,
        "js": [],
        "disable_xml_declaration": True,
        "legend_at_bottom": True,
        "truncate_legend": -1,
        "truncate_label": -1,
        "margin": 12,
        "show_y_guides": True,
        "no_data_text": "No runs in this window",
        **extra,
    }


def _svg(chart: Any, title: str, summary: str) -> SafeString:
    """The chart as inline SVG: pygal's script removed, titled and described for readers."""
    root = chart.render_tree()
    for parent in root.iter():
        for child in list(parent):
            if child.tag == "script":
                parent.remove(child)
    key = uuid.uuid4().hex[:8]
    root.set("role", "img")
    root.set("aria-labelledby", f"chart-title-{key} chart-desc-{key}")
    root.set("focusable", "false")
    desc = ET.Element("desc", {"id": f"chart-desc-{key}"})
    desc.text = summary
    heading = ET.Element("title", {"id": f"chart-title-{key}"})
    heading.text = title
    root.insert(0, desc)
    root.insert(0, heading)
    # ElementTree escapes every label and value: agent slugs and such are text, not markup
    return mark_safe(ET.tostring(root, encoding="unicode"))  # noqa: S308


def bar_by_category(
    *,
    title: str,
    summary: str,
    labels: Sequence[str],
    values: Sequence[float],
    colours: Sequence[str] | None = None,
    value_formatter: Any = None,
) -> SafeString:
    """One bar per category (e.g. runs per status), each labelled below and with its value."""
    chart = pygal.Bar(
        **_options(
            title,
            show_legend=False,
            print_values=True,
            x_label_rotation=-30 if len(labels) > 4 else 0,
            **({"value_formatter": value_formatter} if value_formatter else {}),
        )
    )
    chart.x_labels = list(labels)
    points = []
    for i, value in enumerate(values):
        point: dict[str, Any] = {"value": value, "label": labels[i]}
        if colours:
            point["color"] = colours[i]
        points.append(point)
    chart.add(title, points)
    return _svg(chart, title, summary)


def series_chart(
    *,
    kind: str,
    title: str,
    summary: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    value_formatter: Any = None,
    colours: Sequence[str] | None = None,
) -> SafeString:
    """Values over time: ``kind`` is "bar", "stacked" or "line"; one entry per bucket."""
    cls = {"bar": pygal.Bar, "stacked": pygal.StackedBar, "line": pygal.Line}[kind]
    options = _options(
        title,
        show_minor_x_labels=False,
        x_labels_major_every=max(1, math.ceil(len(labels) / MAX_X_LABELS)),
        show_legend=len(series) > 1,
        legend_at_bottom_columns=max(1, len(series)),
        **({"value_formatter": value_formatter} if value_formatter else {}),
    )
    if colours:
        options["style"] = Style(**{**STYLE.to_dict(), "colors": tuple(colours)})
    if kind == "line":
        options.update(dots_size=3, allow_interruptions=True, fill=False)
    chart = cls(**options)
    chart.x_labels = list(labels)
    for name, values in series:
        chart.add(name, list(values))
    return _svg(chart, title, summary)
