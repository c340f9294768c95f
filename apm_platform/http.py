"""HTTP facts shared by the app's telemetry and the ingest pipeline."""

from __future__ import annotations

# The methods of RFC 9110 and PATCH (RFC 5789): what OpenTelemetry's semantic
# conventions call the known methods. Any other is `_OTHER`, so that nobody can create a
# metric or rollup series per made-up method.
STANDARD_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)
OTHER_METHOD = "_OTHER"


def standard_method(method: str) -> str:
    """The method in upper case if it is a standard one, else `_OTHER`."""
    upper = method.upper()
    return upper if upper in STANDARD_METHODS else OTHER_METHOD
