"""What every page shows: the time range, the environment, the chart interval; all in the
URL's query string, so a link shows the same thing to whoever opens it.

`range` is 1h, 24h, 7d, 30d (ending now) or custom (`from`, `to`, ISO 8601, UTC when
they have no offset). Bad values are a 400 naming the parameter.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.utils import timezone

from observability.analytics.queries import DAY, HOUR, INTERVALS, MINUTE, Window

RANGES = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
CUSTOM = "custom"
DEFAULT_RANGE = "24h"
# Parameters that make up the scope; every link of a page carries them on.
SCOPE_PARAMETERS = ("range", "from", "to", "environment")


class BadParameter(ValueError):
    """A query parameter the UI cannot use; answered with a 400 page naming it."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


def check(form: forms.Form) -> dict:
    """The form's cleaned data, or BadParameter with its errors."""
    if not form.is_valid():
        raise BadParameter({name: list(errors) for name, errors in form.errors.items()})
    return form.cleaned_data


class ScopeForm(forms.Form):
    range = forms.ChoiceField(choices=[(r, r) for r in [*RANGES, CUSTOM]], required=False)
    to = forms.DateTimeField(required=False)
    environment = forms.CharField(required=False, max_length=64)
    interval = forms.ChoiceField(choices=[(i, i) for i in INTERVALS], required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # `from` is a Python keyword: declared here rather than as an attribute.
        self.fields = {"from": forms.DateTimeField(required=False), **self.fields}

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("range") == CUSTOM or (
            not cleaned.get("range") and (cleaned.get("from") or cleaned.get("to"))
        ):
            cleaned["range"] = CUSTOM
            if not cleaned.get("from"):
                self.add_error("from", "A custom range needs its start.")
            start, end = cleaned.get("from"), cleaned.get("to") or timezone.now()
            if start and start >= end:
                self.add_error("from", "Must be earlier than `to`.")
            elif start and end - start > timedelta(days=settings.APM_MAX_WINDOW_DAYS):
                self.add_error(
                    "from", f"A range may span at most {settings.APM_MAX_WINDOW_DAYS} days."
                )
        return cleaned


def auto_interval(window: Window) -> str:
    """Enough points to see a shape, few enough to read from the rollups."""
    if window.seconds <= 3 * 3600:
        return MINUTE
    if window.seconds <= 60 * 86400:
        return HOUR
    return DAY


@dataclasses.dataclass(frozen=True)
class Scope:
    range: str
    window: Window
    environment: str | None
    interval: str
    # The parameters as given (what links carry on), without the page's own.
    given: dict[str, str]

    @classmethod
    def from_query(cls, query, now: datetime | None = None) -> Scope:
        data = check(ScopeForm(query))
        name = data.get("range") or DEFAULT_RANGE
        if name == CUSTOM:
            end = data.get("to") or (now or timezone.now())
            start = data["from"]
        else:
            end = now or timezone.now()
            start = end - RANGES[name]
        window = Window(start.astimezone(UTC), end.astimezone(UTC))
        interval = data.get("interval") or auto_interval(window)
        points = window.seconds / INTERVALS[interval].total_seconds()
        if points > settings.APM_MAX_POINTS:
            raise BadParameter({"interval": [
                f"{int(points)} points; at most {settings.APM_MAX_POINTS}: choose a coarser "
                "interval or a shorter range."
            ]})  # fmt: skip
        given = {key: query[key] for key in (*SCOPE_PARAMETERS, "interval") if query.get(key)}
        return cls(name, window, data.get("environment") or None, interval, given)

    @property
    def previous(self) -> Window:
        """The period of the same length just before this one (what changed)."""
        length = self.window.end - self.window.start
        return Window(self.window.start - length, self.window.start)

    def query(self, *, keep_interval: bool = True, **extra) -> str:
        """The query string of a link in this scope, with `extra` parameters (None drops)."""
        params = dict(self.given)
        if not keep_interval:
            params.pop("interval", None)
        params.update(extra)
        return urlencode({k: v for k, v in params.items() if v not in (None, "")})

    def with_range(self, name: str) -> str:
        """The query string of this scope over another preset range."""
        return self.query(keep_interval=False, range=name, **{"from": None, "to": None})

    def sparkline_interval(self) -> str:
        """Overview sparklines: a few dozen points of traffic."""
        if self.window.seconds <= 3 * 3600:
            return MINUTE
        return HOUR if self.window.seconds <= 3 * 86400 else DAY
