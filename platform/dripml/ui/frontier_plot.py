"""The quality-cost frontier as an SVG whose points are links (``?version=N``): the page
inlines it and a click picks the version to deploy."""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from typing import Any

_LINK = re.compile(r'<a xlink:href="([^"]*?version=(\d+)[^"]*)" target="_blank">')
COST = "latency_p99_ms"
FALLBACK_COSTS = ("latency_p50_ms", "model_mb")


def quality_key(points: Sequence[dict[str, Any]]) -> str | None:
    """The CV objective's column (``validation_<metric>``), else ``objective``."""
    for point in points:
        for key in point:
            if key.startswith("validation_"):
                return key
    return "objective" if any("objective" in p for p in points) else None


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _version(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def frontier_svg(points: Sequence[dict[str, Any]], *, picked: int | None = None,
                 link: str = "?version={version}", title: str = "") -> str:
    """One scatter of quality against p99 latency (ms), a link per registered version.

    Args:
        points: the run's frontier records (``summary()["frontier"]``).
        picked: the version shown as picked (a ring around it).
        link: the URL of a point, formatted with ``version``.
        title: the plot's title.

    Returns:
        The SVG document as text (an empty plot saying so when there are no points).
    """
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.2), dpi=100, layout="constrained")
    FigureCanvasSVG(figure)
    ax = figure.subplots()
    quality = quality_key(points)
    cost = next((c for c in (COST, *FALLBACK_COSTS)
                 if any(_number(p.get(c)) is not None for p in points)), COST)
    drawn = [(p, _number(p.get(cost)), _number(p.get(quality)) if quality else None)
             for p in points]
    drawn = [(p, x, y) for p, x, y in drawn if x is not None and y is not None]
    if not drawn:
        ax.text(0.5, 0.5, "no frontier measured for this run", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
    for point, x, y in drawn:
        version = _version(point.get("version"))
        chosen = bool(point.get("chosen"))
        marker, size, color = ("*", 260, "#d62728") if chosen else ("o", 80, "#1f77b4")
        dots = ax.scatter([x], [y], s=size, marker=marker, color=color, zorder=3,
                          edgecolors="black", linewidths=0.6)
        if version is not None:
            dots.set_urls([link.format(version=version)])
            dots.set_gid(f"point-v{version}")
        label = f"v{version}" if version is not None else f"trial {point.get('trial')}"
        ax.annotate(f"{label} {point.get('algorithm', '')}", (x, y), textcoords="offset points",
                    xytext=(6, 6), fontsize=8)
        if picked is not None and version == picked:
            ring = ax.scatter([x], [y], s=520, marker="o", facecolors="none",
                              edgecolors="#2ca02c", linewidths=2.2, zorder=4)
            ring.set_urls([link.format(version=version)])
    if drawn:
        ax.set_xlabel(f"{cost} (lower is cheaper)")
        ax.set_ylabel(f"{quality}")
        ax.grid(True, alpha=0.3)
    ax.set_title(title or "quality against serving latency: click a point to pick it",
                 fontsize=10)
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    text = buffer.getvalue()
    start = text.find("<svg")
    text = text[start:] if start >= 0 else text
    # Links open in the page itself, and carry the version for the page's script.
    return _LINK.sub(lambda m: (f'<a class="frontier-point" data-version="{m.group(2)}" '
                                f'href="{m.group(1)}" xlink:href="{m.group(1)}">'), text)
