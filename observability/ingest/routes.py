"""Raw URL paths to route templates: `/users/123/orders/9f1c...` -> `/users/{id}/orders/{id}`.

Services that only know the raw path would otherwise create one endpoint per user or
order id. A segment becomes `{id}` when it is a number, a UUID, a long hex string, a
token (long, mixed letters and digits), digit-heavy (dates, invoice numbers) or an
e-mail address. Words, versions (`v2`) and short codes stay.
"""

from __future__ import annotations

import re

PLACEHOLDER = "{id}"
_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)
_LONG_HEX = re.compile(r"^[0-9a-fA-F]{16,}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_\-=.~+]{20,}$")


def normalize_path(path: str) -> str:
    path = path.split("?", 1)[0].split("#", 1)[0]
    segments = [segment for segment in path.split("/") if segment]
    normalized = "/".join(PLACEHOLDER if _is_identifier(s) else s for s in segments)
    return f"/{normalized}"


def _is_identifier(segment: str) -> bool:
    if segment.isalpha():  # the common case: a plain word
        return False
    if segment.isdigit() or "@" in segment:
        return True
    if _UUID.match(segment) or _LONG_HEX.match(segment):
        return True
    digits = sum(char.isdigit() for char in segment)
    if _TOKEN.match(segment) and digits:
        return True
    return len(segment) >= 6 and digits * 2 >= len(segment)
