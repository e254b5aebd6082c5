"""Tiny SVG charts built as strings: the report's plots live inside one HTML file, with no
plotting library (the device extras must not pull matplotlib) and nothing loaded from outside."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from html import escape

FLOAT, INT8, RANDOM, BAD, GRID, INK = "#1f77b4", "#e8710a", "#8c8c8c", "#d62728", "#e4e4e4", "#333333"
_ids = itertools.count()


def fmt(value: float) -> str:
    """Compact tick/label number: 3 significant digits (4 from 1000 on), exponents only far from 1."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    if 1e-3 <= abs(value) < 1e5:  # plain digits: returns like -1086 read better than -1.09e3
        return f"{value:.4g}" if abs(value) >= 1000 else f"{value:.3g}"
    return f"{value:.3g}".replace("e+0", "e").replace("e-0", "e-")


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [low, high] (steps of 1, 2, 2.5 or 5 x 10^k)."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    first = math.ceil(low / step - 1e-9) * step
    return [round(first + i * step, 12) for i in range(int((high - first) / step + 1e-9) + 1)]


def padded(low: float, high: float, share: float = 0.05) -> tuple[float, float]:
    """A range slightly wider than the data, never empty."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return (-1.0, 1.0)
    if high - low <= 1e-12 * max(1.0, abs(low), abs(high)):
        half = max(abs(low) * 0.1, 1e-3)
        return (low - half, high + half)
    pad = (high - low) * share
    return (low - pad, high + pad)


def thin(count: int, limit: int) -> list[int]:
    """At most ``limit`` evenly spaced indices of ``count`` (plots stay light)."""
    if count <= limit:
        return list(range(count))
    return sorted({int(round(i * (count - 1) / (limit - 1))) for i in range(limit)})


class Chart:
    """An x/y chart: title, legend row, axes, grid and ticks, then marks in data coordinates."""

    TOP, RIGHT, BOTTOM = 46, 14, 44

    def __init__(self, title: str, x_range: tuple[float, float], y_range: tuple[float, float],
                 x_label: str = "", y_label: str = "", width: int = 380, height: int = 300,
                 x_ticks: Sequence[float] | None = None, left: float = 62) -> None:
        self.title, self.x_label, self.y_label = title, x_label, y_label
        self.width, self.height, self.left = width, height, left
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        self.x_ticks = list(x_ticks) if x_ticks is not None else nice_ticks(*x_range)
        self.marks: list[str] = []
        self.legend_entries: list[tuple[str, str]] = []
        self.clip = f"clip{next(_ids)}"

    @property
    def bottom_px(self) -> float:
        return self.height - self.BOTTOM

    def sx(self, v: float) -> float:
        return self.left + (v - self.x0) / (self.x1 - self.x0) * (self.width - self.left - self.RIGHT)

    def sy(self, v: float) -> float:
        return self.bottom_px - (v - self.y0) / (self.y1 - self.y0) * (self.bottom_px - self.TOP)

    def points(self, xs: Sequence[float], ys: Sequence[float], color: str, radius: float = 2.2,
               opacity: float = 0.55) -> None:
        dots = "".join(f'<circle cx="{self.sx(x):.1f}" cy="{self.sy(y):.1f}" r="{radius}"/>'
                       for x, y in zip(xs, ys))
        self.marks.append(f'<g fill="{color}" fill-opacity="{opacity}">{dots}</g>')

    def line(self, xs: Sequence[float], ys: Sequence[float], color: str, width: float = 1.2,
             dash: str = "") -> None:
        path = " ".join(f"{self.sx(x):.1f},{self.sy(y):.1f}" for x, y in zip(xs, ys))
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        self.marks.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="{width}"{dashed}/>')

    def vline(self, x: float, color: str, dash: str = "4 3") -> None:
        px = self.sx(x)
        self.marks.append(f'<line x1="{px:.1f}" y1="{self.TOP}" x2="{px:.1f}" y2="{self.bottom_px}" '
                          f'stroke="{color}" stroke-dasharray="{dash}"/>')

    def rect(self, x0: float, x1: float, top: float, height: float, color: str, tip: str = "") -> None:
        """A bar spanning data x0..x1 at pixel row ``top`` (horizontal bars)."""
        a, b = sorted((self.sx(x0), self.sx(x1)))
        title = f"<title>{escape(tip)}</title>" if tip else ""
        self.marks.append(f'<rect x="{a:.1f}" y="{top:.1f}" width="{max(b - a, 1.0):.1f}" height="{height}" '
                          f'fill="{color}" fill-opacity="0.85">{title}</rect>')

    def column(self, x0: float, x1: float, y0: float, y1: float, color: str) -> None:
        """A vertical bar (histograms) in data coordinates."""
        a, b = sorted((self.sx(x0), self.sx(x1)))
        top, bottom = sorted((self.sy(y0), self.sy(y1)))
        self.marks.append(f'<rect x="{a:.1f}" y="{top:.1f}" width="{max(b - a, 0.8):.1f}" '
                          f'height="{max(bottom - top, 0.5):.1f}" fill="{color}" fill-opacity="0.85"/>')

    def legend(self, label: str, color: str) -> None:
        self.legend_entries.append((label, color))

    def svg(self) -> str:
        w, h, left, right = self.width, self.height, self.left, self.width - self.RIGHT
        top, bottom = self.TOP, self.bottom_px
        parts = [f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
                 f'role="img" font-family="sans-serif" font-size="11" fill="{INK}">',
                 f'<title>{escape(self.title)}</title>',
                 f'<defs><clipPath id="{self.clip}"><rect x="{left}" y="{top}" width="{right - left}" '
                 f'height="{bottom - top}"/></clipPath></defs>',
                 f'<text x="{w / 2:.0f}" y="16" text-anchor="middle" font-size="13" font-weight="600">'
                 f'{escape(self.title)}</text>']
        for t in self.x_ticks:
            x = self.sx(t)
            if left - 0.5 <= x <= right + 0.5:
                parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="{GRID}"/>'
                             f'<text x="{x:.1f}" y="{bottom + 15}" text-anchor="middle">{fmt(t)}</text>')
        parts += self._y_axis()
        parts.append(f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="none" '
                     f'stroke="#999"/>')
        parts.append(f'<g clip-path="url(#{self.clip})">{"".join(self.marks)}</g>')
        parts.append(f'<text x="{(left + right) / 2:.0f}" y="{h - 8}" text-anchor="middle">'
                     f'{escape(self.x_label)}</text>')
        x = left
        for label, color in self.legend_entries:
            parts.append(f'<rect x="{x:.0f}" y="26" width="10" height="10" fill="{color}"/>'
                         f'<text x="{x + 14:.0f}" y="35">{escape(label)}</text>')
            x += 26 + 6.2 * len(label)
        parts.append("</svg>")
        return "".join(parts)

    def _y_axis(self) -> list[str]:
        parts = []
        for t in nice_ticks(self.y0, self.y1):
            y = self.sy(t)
            if self.TOP - 0.5 <= y <= self.bottom_px + 0.5:
                parts.append(f'<line x1="{self.left}" y1="{y:.1f}" x2="{self.width - self.RIGHT}" y2="{y:.1f}" '
                             f'stroke="{GRID}"/><text x="{self.left - 5}" y="{y + 4:.1f}" text-anchor="end">'
                             f'{fmt(t)}</text>')
        parts.append(f'<text transform="translate(14,{(self.TOP + self.bottom_px) / 2:.0f}) rotate(-90)" '
                     f'text-anchor="middle">{escape(self.y_label)}</text>')
        return parts


class RowChart(Chart):
    """A chart with one text-labelled row per item (bars across), instead of a numeric y axis."""

    ROW_PAD = 8

    def __init__(self, title: str, labels: Sequence[str], bars_per_row: int, x_label: str,
                 flagged: Sequence[bool] | None = None, width: int = 760) -> None:
        self.labels = list(labels)
        self.flagged = list(flagged) if flagged is not None else [False] * len(self.labels)
        self.row = 10 * bars_per_row + self.ROW_PAD
        left = min(30 + 6.4 * max((len(s) for s in self.labels), default=4), 340)
        height = int(self.TOP + self.BOTTOM + self.row * max(len(self.labels), 1) + 6)
        super().__init__(title, (0.0, 1.0), (0.0, 1.0), x_label=x_label, width=width, height=height, left=left)

    def bar_top(self, row: int, bar: int) -> float:
        return self.TOP + 3 + row * self.row + self.ROW_PAD / 2 + 10 * bar

    def _y_axis(self) -> list[str]:
        parts = []
        for i, (label, bad) in enumerate(zip(self.labels, self.flagged)):
            style = f' fill="{BAD}" font-weight="600"' if bad else ""
            y = self.TOP + 3 + i * self.row + self.row / 2 + 4
            parts.append(f'<text x="{self.left - 6:.0f}" y="{y:.1f}" text-anchor="end"{style}>{escape(label)}</text>')
        return parts


def hbars(title: str, labels: Sequence[str], series: Sequence[tuple[str, str, Sequence[float | None]]],
          x_label: str, reference: tuple[float, str] | None = None) -> str:
    """Horizontal bars, one row per label and one bar per series; ``reference`` adds a dashed line."""
    chart = RowChart(title, labels, len(series), x_label)
    values = [v for _, _, vs in series for v in vs if v is not None and math.isfinite(v)]
    chart.x1 = max(values + [reference[0] if reference else 0.0, 1e-12]) * 1.08
    chart.x_ticks = nice_ticks(0.0, chart.x1)
    for s, (name, color, vs) in enumerate(series):
        chart.legend(name, color)
        for i, v in enumerate(vs):
            if v is not None and math.isfinite(v):
                chart.rect(0.0, v, chart.bar_top(i, s), 9, color, f"{name}: {fmt(v)}")
    if reference:
        chart.vline(reference[0], INK)
        chart.legend(reference[1], INK)
    return chart.svg()


def ranges(title: str, labels: Sequence[str], bars: Sequence[tuple[str, str, Sequence[tuple[float, float]]]],
           limits: tuple[float, float], x_label: str, flagged: Sequence[bool]) -> str:
    """One row per label with interval bars (e.g. calibration vs held-out range) between two limit lines."""
    low = min([limits[0]] + [a for _, _, iv in bars for a, _ in iv])
    high = max([limits[1]] + [b for _, _, iv in bars for _, b in iv])
    chart = RowChart(title, labels, len(bars), x_label, flagged)
    chart.x0, chart.x1 = padded(low, high, 0.03)
    chart.x_ticks = nice_ticks(chart.x0, chart.x1)
    for s, (name, color, intervals) in enumerate(bars):
        chart.legend(name, color)
        for i, (a, b) in enumerate(intervals):
            chart.rect(a, b, chart.bar_top(i, s), 9, color, f"{name}: {fmt(a)} .. {fmt(b)}")
    for edge in limits:
        chart.vline(edge, BAD)
    chart.legend("int8 limits (clipped beyond)", BAD)
    return chart.svg()
