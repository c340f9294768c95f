"""What a request "reads as" for search, masked before any text leaves the system.

A document is a short sentence: method, endpoint, status, rounded latency, service,
environment and the (masked) error message. Latency is rounded to one significant
digit: exact milliseconds carry no meaning for search, and rounding makes identical
documents frequent, so each distinct text is embedded once.
"""

from __future__ import annotations

import hashlib
import re

# Masks, applied in order. Each replaces what could identify a person or grant access.
_MASKS = (
    # Authorization headers and bearer/basic tokens.
    (re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 <token>"),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "<email>"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"), "<ip>"),
    # IPv6: eight groups, or shortened with '::' (at least two groups around it).
    (re.compile(r"(?i)\b(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}\b"), "<ip>"),
    (re.compile(r"(?i)(?<![0-9a-z:])(?:[0-9a-f]{1,4}:){1,6}:"
                r"(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4})*)?(?![0-9a-z:])"), "<ip>"),
    # key=value secrets (password=..., api_key: ...).
    (re.compile(r"(?i)\b(password|passwd|secret|api[_-]?key|token)(\s*[=:]\s*)\S+"),
     r"\1\2<secret>"),
    # Long opaque strings mixing letters and digits: keys, JWTs, session ids.
    (re.compile(r"\b(?=[A-Za-z0-9_\-+/=.]*\d)(?=[A-Za-z0-9_\-+/=.]*[A-Za-z])"
                r"[A-Za-z0-9_\-+/=.]{24,}\b"), "<secret>"),
)  # fmt: skip


def mask(text: str) -> str:
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return text


def rounded_latency(latency_ms: float) -> str:
    """One significant digit: "~300 ms", "~2 s" (exact values mean nothing to search)."""
    if latency_ms >= 1000:
        return f"~{float(f'{latency_ms / 1000:.1g}'):g} s"
    return f"~{float(f'{latency_ms:.1g}'):g} ms"


def document_text(method: str, endpoint: str, status_code: int, latency_ms: float,
                  service: str, environment: str, error_message: str) -> str:  # fmt: skip
    parts = [
        f"{method} {endpoint} status {status_code} ({status_code // 100}xx)",
        f"latency {rounded_latency(latency_ms)}",
        f"service {service}",
    ]
    if environment:
        parts.append(f"environment {environment}")
    if error_message:
        parts.append(f"error: {error_message[:1000]}")
    return mask(", ".join(parts))


def document_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
