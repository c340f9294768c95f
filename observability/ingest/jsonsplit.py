"""The top-level members of a JSON document, found without decoding what they hold.

The decoders recurse into nested values, so a value nested deeply enough (a few
thousand brackets fit in an event's attribute limit) makes them fail with
RecursionError, and with them the whole batch. This scanner only looks at the first
level: a batch can still be split into its events, and an event into its fields, so
the one deep value is the only thing rejected. It runs only on bodies the decoders
refused, never on the hot path.
"""

from __future__ import annotations

import re

# Characters that change the structure; everything else is skipped by the regex engine.
_STRUCTURE = re.compile(rb'["\[\]{},:]')
# The rest of a string after its opening quote, escapes included, up to the closing quote.
_STRING_REST = re.compile(rb'(?:[^"\\]|\\.)*"', re.DOTALL)
_SPACE = b" \t\r\n"


class NotSplittable(ValueError):
    """Not a JSON object or array, or cut short."""


def members(text: bytes) -> list[tuple[bytes | int, bytes]]:
    """(key, value) of each member of a top-level object (keys as their raw JSON string),
    or (index, value) of each element of a top-level array, values as raw JSON."""
    start = len(text) - len(text.lstrip(_SPACE))
    opener = text[start : start + 1]
    if opener not in (b"{", b"["):
        raise NotSplittable("Expected a JSON object or array.")
    in_object = opener == b"{"
    found: list[tuple[bytes | int, bytes]] = []
    depth, position = 0, start
    key: bytes | int | None = None if in_object else 0
    value_start = None if in_object else start + 1
    while match := _STRUCTURE.search(text, position):
        char, at, position = match.group(), match.start(), match.end()
        if char == b'"':
            string = _STRING_REST.match(text, position)
            if string is None:
                raise NotSplittable("Unterminated string.")
            position = string.end()
            if depth == 1 and in_object and value_start is None:
                key = text[at:position]
        elif char in b"[{":
            depth += 1
        elif char == b":" and depth == 1 and in_object:
            if key is None:
                raise NotSplittable("An object member has no string key.")
            value_start = position
        elif depth == 1 and char in b",]}":
            value = text[value_start:at].strip(_SPACE) if value_start is not None else b""
            if value:
                found.append((key, value))
            if char != b",":
                return found
            key, value_start = (None, None) if in_object else (len(found), position)
        elif char in b"]}":
            depth -= 1
    raise NotSplittable("The JSON document is cut short.")
