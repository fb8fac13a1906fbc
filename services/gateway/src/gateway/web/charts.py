"""The admin dashboard's charts, drawn here as inline SVG: no script, no CDN, nothing the
page's Content-Security-Policy would have to allow (colours and sizes are presentation
attributes and `app.css` classes, never `style`).

Every bar and point carries `data-period`, `data-series` and `data-value` (the figure as the
API answers it) and a `<title>` with the formatted value, so the chart reads without a mouse
and tests can check what it shows. The SVG scales to its box (`viewBox`), so it fits a phone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 400, 220
LEFT, RIGHT, TOP, BOTTOM = 62, 10, 22, 26
GRID_LINES = 4


@dataclass(frozen=True)
class Line:
    """One series of a chart: `key` names its colour class (`s-<key>`), `label` its legend."""

    key: str
    label: str
    values: Sequence[float | None]
    raw: Sequence[str | None]


def _nice_top(peak: float, whole: bool = False) -> float:
    """A round upper bound at or above `peak` (1, 2, 2.5, 5 × a power of ten); for whole
    numbers (`whole`) a multiple of the grid lines, so every grid line is a whole number."""
    if whole:
        step = max(1, math.ceil(_nice_top(peak) / GRID_LINES))
        return float(step * GRID_LINES)
    if peak <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(peak))
    for step in (1, 2, 2.5, 5, 10):
        if peak <= step * power:
            return step * power
    return 10 * power


def _frame(chart_id: str, title: str, top: float, periods: Sequence[str],
           fmt: Callable[[float], str], lines: Sequence[Line]) -> list[str]:
    inner_h = HEIGHT - TOP - BOTTOM
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-labelledby="{chart_id}-t" data-chart="{chart_id}" '
             f'preserveAspectRatio="xMidYMid meet">',
             f'<title id="{chart_id}-t">{escape(title)}</title>']
    for i in range(GRID_LINES + 1):
        value = top * i / GRID_LINES
        y = TOP + inner_h - inner_h * i / GRID_LINES
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" '
                     f'y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{escape(fmt(value))}</text>')
    if periods:
        shown = sorted({0, len(periods) // 2, len(periods) - 1})
        for i in shown:
            x = _x(i, len(periods))
            anchor = "start" if i == 0 and len(periods) > 1 else (
                "end" if i == len(periods) - 1 and len(periods) > 1 else "middle")
            parts.append(f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 8}" '
                         f'text-anchor="{anchor}">{escape(periods[i])}</text>')
    if len(lines) > 1:
        x = LEFT
        for line in lines:
            parts.append(f'<rect class="s-{line.key}" x="{x}" y="{TOP - 18}" width="10" '
                         f'height="10"/>')
            parts.append(f'<text class="legend" x="{x + 14}" y="{TOP - 8}">'
                         f'{escape(line.label)}</text>')
            x += 24 + 8 * len(line.label)
    return parts


def _x(i: int, count: int) -> float:
    inner_w = WIDTH - LEFT - RIGHT
    return LEFT + inner_w * (i + 0.5) / count


def _point_title(period: str, line: Line, text: str) -> str:
    return f"<title>{escape(period)} · {escape(line.label)}: {escape(text)}</title>"


def bars(chart_id: str, title: str, periods: Sequence[str], lines: Sequence[Line],
         fmt: Callable[[float], str], whole: bool = False) -> Markup:
    """Bars per period; several series are stacked (e.g. new and renewing customers)."""
    totals = [sum(v or 0 for v in column) for column in zip(*(ln.values for ln in lines),
                                                            strict=True)]
    top = _nice_top(max(totals, default=0), whole)
    parts = _frame(chart_id, title, top, periods, fmt, lines)
    inner_h = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT - RIGHT) / max(1, len(periods))
    width = max(1.0, slot * 0.7)
    for i, period in enumerate(periods):
        base = TOP + inner_h
        for line in lines:
            value = line.values[i]
            if value is None:
                continue
            height = inner_h * value / top
            base -= height
            parts.append(
                f'<rect class="bar s-{line.key}" x="{_x(i, len(periods)) - width / 2:.1f}" '
                f'y="{base:.1f}" width="{width:.1f}" height="{height:.1f}" '
                f'data-period="{escape(period)}" data-series="{line.key}" '
                f'data-value="{escape(line.raw[i])}">'
                f'{_point_title(period, line, fmt(value))}</rect>')
    parts.append("</svg>")
    return Markup("".join(parts))


def lines(chart_id: str, title: str, periods: Sequence[str], series: Sequence[Line],
          fmt: Callable[[float], str], top: float | None = None,
          whole: bool = False) -> Markup:
    """A line per series with a point per period; a missing value (null) breaks the line."""
    peak = max((v for ln in series for v in ln.values if v is not None), default=0)
    top = top or _nice_top(peak, whole)
    parts = _frame(chart_id, title, top, periods, fmt, series)
    inner_h = HEIGHT - TOP - BOTTOM
    for line in series:
        run: list[str] = []
        points = []
        for i, value in enumerate(line.values):
            if value is None:
                if len(run) > 1:
                    parts.append(f'<polyline class="line s-{line.key}" '
                                 f'points="{" ".join(run)}"/>')
                run = []
                continue
            x, y = _x(i, len(periods)), TOP + inner_h - inner_h * value / top
            run.append(f"{x:.1f},{y:.1f}")
            points.append(
                f'<circle class="dot s-{line.key}" cx="{x:.1f}" cy="{y:.1f}" r="3.5" '
                f'data-period="{escape(periods[i])}" data-series="{line.key}" '
                f'data-value="{escape(line.raw[i])}">'
                f'{_point_title(periods[i], line, fmt(value))}</circle>')
        if len(run) > 1:
            parts.append(f'<polyline class="line s-{line.key}" points="{" ".join(run)}"/>')
        parts += points
    parts.append("</svg>")
    return Markup("".join(parts))
