"""Number formats of the UI: compact counts, rates, latencies, and changes."""

from __future__ import annotations

from urllib.parse import urlencode

from django import template
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from observability.ui.scope import RANGES, SCOPE_PARAMETERS

register = template.Library()
# What a missing value shows (an en dash).
NONE = "\u2013"


@register.filter
def count(value) -> str:
    """12 345 -> 12.3k; exact below 10,000."""
    if value is None:
        return NONE
    value = float(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if abs(value) >= limit:
            return (
                f"{value / limit:.3g}{suffix}"
                if value < 100 * limit
                else f"{value / limit:.0f}{suffix}"
            )
    return f"{value:,.0f}"


@register.filter
def rate(value) -> str:
    """Requests per second."""
    if value is None:
        return NONE
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}" if value >= 0.01 else f"{value:.2g}"


@register.filter
def percent(value) -> str:
    if value is None:
        return NONE
    value *= 100
    return "0%" if value == 0 else f"{value:.2f}%" if value < 10 else f"{value:.1f}%"


@register.filter
def ms(value) -> str:
    if value is None:
        return NONE
    if value >= 10_000:
        return f"{value / 1000:.1f} s"
    if value >= 100:
        return f"{value:.0f} ms"
    return f"{value:.1f} ms" if value >= 1 else f"{value:.2f} ms"


@register.filter
def apdex(value) -> str:
    return NONE if value is None else f"{value:.2f}"


# Whether a KPI going up is good, bad or neither (the colour of its change).
UP_IS = {"hits": None, "rps": None, "errors": "bad", "error_rate": "bad", "latency": "bad",
         "apdex": "good"}  # fmt: skip


@register.simple_tag
def change(current, previous, kind: str):
    """The relative change against the previous period, coloured by whether it is good."""
    # A missing previous row resolves to "" in templates: nothing to compare either.
    numbers = all(isinstance(v, int | float) for v in (current, previous))
    if not numbers or previous == 0:
        return ""  # nothing to compare
    ratio = (current - previous) / abs(previous)
    if abs(ratio) < 0.005:
        return mark_safe('<span class="change flat">±0%</span>')
    verdict = UP_IS[kind]
    if verdict is None:
        tone = "neutral"
    else:
        tone = "good" if (ratio > 0) == (verdict == "good") else "bad"
    arrow = "▲" if ratio > 0 else "▼"
    text = f"{ratio:+.0%}" if abs(ratio) >= 0.1 else f"{ratio:+.1%}"
    return format_html('<span class="change {}">{} {}</span>', tone, arrow, text)


# Parameters that describe what was fetched rather than what is looked at: a link that
# changes the scope or the filters starts again from the first page.
PAGE_POSITION = ("cursor",)


@register.simple_tag(takes_context=True)
def here(context, **params) -> str:
    """`?` + the current page's query string with `params` changed (None drops one)."""
    current = {k: v for k, v in context["request"].GET.items() if k not in PAGE_POSITION}
    current.update(params)
    text = urlencode({k: v for k, v in current.items() if v not in (None, "")})
    return f"?{text}" if text else "?"


@register.simple_tag(takes_context=True)
def range_link(context, name: str) -> str:
    """The current page over another preset range (its own interval, no custom bounds)."""
    current = {k: v for k, v in context["request"].GET.items()
               if k not in (*PAGE_POSITION, "from", "to", "interval")}  # fmt: skip
    current["range"] = name
    return f"?{urlencode(current)}"


@register.simple_tag(takes_context=True)
def scoped(context, viewname: str, *args, **params) -> str:
    """The URL of another page of this project in the same scope, with `params`."""
    url = reverse(viewname, args=[context["project"].slug, *args])
    text = context["scope"].query(**params)
    return f"{url}?{text}" if text else url


@register.simple_tag
def preset_ranges() -> list[str]:
    return list(RANGES)


@register.simple_tag(takes_context=True)
def page_params(context) -> list[tuple[str, str]]:
    """The current page's own parameters (not the scope's): what a scope form keeps."""
    skip = {*SCOPE_PARAMETERS, "interval", *PAGE_POSITION}
    return [(k, v) for k, v in context["request"].GET.items() if k not in skip and v]


@register.simple_tag
def share(part, whole) -> str:
    return percent(part / whole) if whole else NONE
