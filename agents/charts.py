"""The admin's usage charts: cost (USD), tokens and runs by outcome per day over the last ``CHART_DAYS`` days, from
the ``UsageDay`` rows, drawn server-side as SVG (``templates/admin/agents/_chart.html``).

``fleet_charts`` (the index: the projects a user sees, the biggest ones as series of their own) and
``project_charts`` (one project's page) each cost a fixed number of queries, whatever the fleet's size: they read at
most ``projects × CHART_DAYS`` rows of the ``(day)`` and ``(project, is_playground, day)`` indexes. Playground agents
are left out, as in the index's agent summary. A chart carries its text alternatives: an ``aria`` summary, a
``<title>`` per bar and the table of the numbers behind it.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q, QuerySet, Sum
from django.utils.formats import date_format
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from projects.models import Project

from .counters import RUN_COLUMNS, today
from .models import UsageDay

#: Days a chart covers, today included.
CHART_DAYS = 30
#: Projects drawn as series of their own on the index; the others are summed as "Other projects".
TOP_PROJECTS = 5
#: Series colours (Okabe–Ito, readable with the common colour-vision deficiencies); the last one is "other".
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#8c8c8c")
OUTCOME_COLOURS = {"succeeded": "#009e73", "failed": "#d55e00", "cancelled": "#8c8c8c"}
#: Width of one day's slot in the SVG's user units (the drawing is 100 units high and stretched to the page).
SLOT = 10


@dataclass
class Series:
    """One stacked series: its legend ``label``, ``colour`` and one value per day."""

    label: str
    colour: str
    values: list[float] = field(default_factory=list)


def _number(value: float, unit: str) -> str:
    """``12,340`` tokens, ``1.25`` / ``0.0042`` USD, ``3`` runs."""
    if unit == "USD":
        return f"{value:,.2f}" if abs(value) >= 1 or value == 0 else f"{value:.4f}"
    return f"{value:,.0f}"


def _axis_label(value: float, unit: str) -> str:
    """An axis value: ``_number`` without trailing zeros (``0.25``, ``1``)."""
    text = _number(value, unit)
    return text.rstrip("0").rstrip(".") if "." in text else text


def _axis_max(peak: float) -> float:
    """The top of the axis: ``peak`` rounded up to 1, 2 or 5 × 10ⁿ (1 for an empty chart)."""
    if peak <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(peak))
    return next(step * magnitude for step in (1, 2, 5, 10) if step * magnitude >= peak)


def bar_chart(*, key: str, title: str, unit: str, days: list[datetime.date], series: list[Series]) -> dict[str, Any]:
    """The drawing and text of a stacked bar chart, one bar per day of ``days``.

    Returns ``{"key", "title", "unit", "summary", "svg" (the drawing, ``_svg``), "bars": [{"x", "width", "title",
    "segments": [{"y", "height", "colour", "title"}]}], "width", "grid": [{"y", "label"}], "first", "middle",
    "last", "legend", "table": {"head", "rows", "totals"}}``; ``x``/``y``/``width``/``height`` are in SVG user units
    (``SLOT`` per day, 100 high).
    """
    totals = [sum(s.values[i] for s in series) for i in range(len(days))]
    top = _axis_max(max(totals, default=0))
    bars = []
    for i, day in enumerate(days):
        label, base, segments = date_format(day, "M j"), 100.0, []
        for s in series:
            value = s.values[i]
            if value <= 0:
                continue
            height = value / top * 100
            base -= height
            segments.append({"y": round(base, 3), "height": round(height, 3), "colour": s.colour,
                             "title": f"{label} · {s.label}: {_number(value, unit)} {unit}"})
        bars.append({"x": i * SLOT + 1, "width": SLOT - 2, "segments": segments,
                     "title": f"{label}: {_number(totals[i], unit)} {unit}"})
    total = sum(totals)
    busiest = max(range(len(days)), key=lambda i: totals[i]) if total else None
    summary = f"{title}, {date_format(days[0], 'M j')} to {date_format(days[-1], 'M j')}: {_number(total, unit)} {unit}"
    if busiest is not None:
        summary += f" in all; the most on {date_format(days[busiest], 'M j')}, {_number(totals[busiest], unit)} {unit}."
    else:
        summary += "."
    grid = [{"y": 100 - share * 100, "label": _axis_label(top * share, unit)} for share in (0, 0.5, 1)]
    return {
        "key": key, "title": title, "unit": unit, "summary": summary, "bars": bars, "width": len(days) * SLOT,
        "svg": _svg(summary, bars, grid, len(days) * SLOT),
        "grid": grid,
        "first": date_format(days[0], "M j"), "middle": date_format(days[len(days) // 2], "M j"),
        "last": date_format(days[-1], "M j"),
        "legend": [{"label": s.label, "colour": s.colour} for s in series],
        "table": {
            "head": [s.label for s in series],
            "rows": [(date_format(day, "Y-m-d"), [_number(s.values[i], unit) for s in series], _number(totals[i], unit))
                     for i, day in enumerate(days)],
            "totals": ([_number(sum(s.values), unit) for s in series], _number(total, unit)),
        },
    }


def _svg(summary: str, bars: list[dict], grid: list[dict], width: int) -> SafeString:
    """The chart's SVG (built here rather than in a template loop: hundreds of elements): stretched to the width
    (``preserveAspectRatio="none"``), an ``aria-label`` and ``<title>`` with the summary, rules, and per day a group
    titled with its total holding one ``<rect>`` per series, titled with its value."""
    parts = [
        f'<svg class="usage-chart-svg" viewBox="0 0 {width} 100" preserveAspectRatio="none" role="img" '
        f'aria-label="{escape(summary)}" focusable="false"><title>{escape(summary)}</title>'
    ]
    parts += [f'<line class="usage-chart-rule" x1="0" x2="{width}" y1="{g["y"]:g}" y2="{g["y"]:g}" '
              'vector-effect="non-scaling-stroke"/>' for g in grid]
    for bar in bars:
        parts.append(f'<g><title>{escape(bar["title"])}</title><rect class="usage-chart-hit" x="{bar["x"]}" '
                     f'width="{bar["width"]}" y="0" height="100"/>')
        parts += [f'<rect x="{bar["x"]}" width="{bar["width"]}" y="{seg["y"]:g}" height="{seg["height"]:g}" '
                  f'fill="{seg["colour"]}"><title>{escape(seg["title"])}</title></rect>' for seg in bar["segments"]]
        parts.append("</g>")
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every interpolated text is escaped above; numbers and colours are ours


def chart_days(*, end: datetime.date | None = None) -> list[datetime.date]:
    """The ``CHART_DAYS`` days up to ``end`` (default: today, UTC), oldest first."""
    end = end or today()
    return [end - datetime.timedelta(days=CHART_DAYS - 1 - n) for n in range(CHART_DAYS)]


def _per_day(rows: QuerySet, days: list[datetime.date], **sums) -> dict[str, list[float]]:
    """``{name: [value per day]}`` of the ``sums`` (name → aggregate) of ``rows`` grouped by day, in one query."""
    aliased = {f"sum_{name}": aggregate for name, aggregate in sums.items()}  # no alias may shadow a column
    by_day = {row["day"]: row for row in rows.order_by().values("day").annotate(**aliased)}
    return {name: [float(by_day.get(day, {}).get(f"sum_{name}") or 0) for day in days] for name in sums}


def _runs_chart(values: dict[str, list[float]], days) -> dict[str, Any]:
    outcomes = [Series(status.label, OUTCOME_COLOURS[status.value], values[column])
                for status, column in RUN_COLUMNS.items()]
    return bar_chart(key="runs", title="Runs ended per day", unit="runs", days=days, series=outcomes)


def _top(rows: QuerySet, column: str) -> list[tuple[Any, str]]:
    """``(project id, name)`` of the ``TOP_PROJECTS`` projects with the most ``column`` in ``rows`` (one query)."""
    ranked = (rows.order_by().values("project", "project__name").annotate(n=Sum(column)).filter(n__gt=0)
              .order_by("-n", "project__name")[:TOP_PROJECTS])
    return [(row["project"], row["project__name"]) for row in ranked]


def _by_project(values: dict[str, list[float]], top: list[tuple[Any, str]], column: str) -> list[Series]:
    series = [Series(name, PALETTE[n], values[f"{column}_{n}"]) for n, (_, name) in enumerate(top)]
    others = [total - sum(s.values[i] for s in series) for i, total in enumerate(values[column])]
    if any(value > 0 for value in others):
        series.append(Series("Other projects", PALETTE[-1], others))
    return series


def fleet_charts(projects: QuerySet[Project]) -> dict[str, Any]:
    """The index's charts over ``projects`` (a queryset, such as the projects a user sees), in three queries: the
    top projects by cost, by tokens, then every day's sums.

    Returns ``{"prefix": "fleet", "days", "charts": [cost, tokens, runs], "empty"}``: ``bar_chart`` dicts, the
    biggest ``TOP_PROJECTS`` projects as series of their own and the rest as "Other projects"; ``empty`` when there
    was no usage in the period.
    """
    days = chart_days()
    rows = UsageDay.objects.filter(project__in=projects, is_playground=False, day__gte=days[0], day__lte=days[-1])
    top_cost, top_tokens = _top(rows, "cost_incurred"), _top(rows, "tokens_used")
    sums = {"cost_incurred": Sum("cost_incurred"), "tokens_used": Sum("tokens_used")}
    for column, top in (("cost_incurred", top_cost), ("tokens_used", top_tokens)):
        sums.update({f"{column}_{n}": Sum(column, filter=Q(project=pk)) for n, (pk, _) in enumerate(top)})
    sums.update({column: Sum(column) for column in RUN_COLUMNS.values()})
    values = _per_day(rows, days, **sums)
    charts = [
        bar_chart(key="cost", title="Cost per day", unit="USD", days=days,
                  series=_by_project(values, top_cost, "cost_incurred")),
        bar_chart(key="tokens", title="Tokens per day", unit="tokens", days=days,
                  series=_by_project(values, top_tokens, "tokens_used")),
        _runs_chart(values, days),
    ]
    empty = not any(any(values[column]) for column in ("cost_incurred", "tokens_used", *RUN_COLUMNS.values()))
    return {"prefix": "fleet", "days": CHART_DAYS, "charts": charts, "empty": empty}


def project_charts(project: Project) -> dict[str, Any]:
    """One project's charts, in one query: cost per day, tokens per day (input, output, and tokens posted without
    a split), runs ended per day by outcome. The shape of ``fleet_charts``."""
    days = chart_days()
    rows = UsageDay.objects.filter(project=project, is_playground=False, day__gte=days[0], day__lte=days[-1])
    values = _per_day(
        rows, days, **{column: Sum(column) for column in (
            "cost_incurred", "tokens_used", "prompt_tokens", "completion_tokens", *RUN_COLUMNS.values())}
    )
    unsplit = [max(0.0, t - p - c) for t, p, c in zip(
        values["tokens_used"], values["prompt_tokens"], values["completion_tokens"], strict=True)]
    token_series = [Series("Input", PALETTE[0], values["prompt_tokens"]),
                    Series("Output", PALETTE[1], values["completion_tokens"])]
    if any(unsplit):
        token_series.append(Series("Posted (no split)", PALETTE[-1], unsplit))
    charts = [
        bar_chart(key="cost", title="Cost per day", unit="USD", days=days,
                  series=[Series(project.name, PALETTE[0], values["cost_incurred"])]),
        bar_chart(key="tokens", title="Tokens per day", unit="tokens", days=days, series=token_series),
        _runs_chart(values, days),
    ]
    empty = not any(any(v) for v in values.values())
    return {"prefix": "project", "days": CHART_DAYS, "charts": charts, "empty": empty}

