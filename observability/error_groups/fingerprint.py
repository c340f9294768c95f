"""The fingerprint of a failure: which failures are the same problem.

In order of preference (VERSION 1):
1. the client's own `fingerprint`, within the service;
2. the exception type and the in-app frames of its stack trace (function and module,
   no line numbers: an edit elsewhere in the file must not split a group), within the
   service;
3. the exception type and its message with the variable parts replaced, within the
   service and endpoint;
4. the error message with the variable parts replaced (ids, numbers, addresses, dates,
   durations, quoted values), within the service and endpoint;
5. for a 5xx with no message at all: its status code, within the service and endpoint.

The version is stored with each group: an improved algorithm gets a new version, and
history keeps the groups it was made of instead of being regrouped silently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

VERSION = 1

# Variable parts of messages, in order of preference where several could match at one
# place (a URL contains numbers, an e-mail dots and digits...). Each becomes a
# placeholder that says what it was.
_HEX = "[0-9a-f]"
_PARAMETER_PATTERNS = (
    ("<url>", r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+"),
    ("<email>", r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
    ("<uuid>", rf"\b{_HEX}{{8}}-?{_HEX}{{4}}-?{_HEX}{{4}}-?{_HEX}{{4}}-?{_HEX}{{12}}\b"),
    ("<date>", r"\b\d{4}-\d{2}-\d{2}"
               r"(?:[ T]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b"),
    ("<time>", r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b"),
    ("<ip>", r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"),
    # IPv6, "::" shortening included: hex groups and at least two colons.
    ("<ip>", rf"(?<![\w:])(?=[:0-9a-f]*{_HEX})(?:{_HEX}{{0,4}}:){{2,7}}{_HEX}{{0,4}}(?![\w:])"),
    ("<quoted>", r"'[^']*'|\"[^\"]*\"|`[^`]*`"),
    ("<duration>", r"\b\d+(?:\.\d+)?\s?"
                   r"(?:ns|us|µs|ms|s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?)\b"),
    # Numbers, hex and identifier-like tokens mixing letters and digits (order 8c1f2b,
    # user_1234, 0x7f3a): one placeholder, since one id may look like any of them.
    ("<id>", r"\b0x[0-9a-f]+\b|\b(?=\w*\d)\w{4,}\b|(?<![\w.])[-+]?\d+(?:[.,]\d+)*(?![\w.])"),
)  # fmt: skip
# One pass over the message: one alternation, each alternative a named group.
_PARAMETERS = re.compile(
    "|".join(f"(?P<p{n}>{pattern})" for n, (_, pattern) in enumerate(_PARAMETER_PATTERNS)), re.I
)
_PLACEHOLDERS = {f"p{n}": name for n, (name, _) in enumerate(_PARAMETER_PATTERNS)}
_SPACES = re.compile(r"\s+")

# Stack frames in the formats of the common runtimes: (function, module or file).
_FRAME_FORMATS = (
    # Python:   File "/app/shop/cart.py", line 42, in add_item
    re.compile(r'File "(?P<file>[^"]+)", line \d+, in (?P<function>[^\s]+)'),
    # Java/Kotlin/Scala:   at com.shop.cart.CartService.add(CartService.java:42)
    re.compile(r"\bat (?P<function>[\w$.<>]+)\((?P<file>[^:)]*)(?::\d+)?\)"),
    # JavaScript:   at addItem (/app/src/cart.js:10:5)   or   at /app/src/cart.js:10:5
    re.compile(r"\bat (?:(?P<function>[\w$.<>\[\] ]+?) \()?(?P<file>[^\s()]+?):\d+:\d+\)?"),
    # Go:   shop/cart.(*Service).Add(...)\n\t/app/cart/service.go:42
    re.compile(r"^(?P<function>[\w./*()-]+\.[\w]+)\([^)]*\)\s*\n\s+(?P<file>\S+\.go):\d+", re.M),
    # Ruby:   /app/models/cart.rb:42:in `add_item'
    re.compile(r"(?P<file>\S+\.rb):\d+:in [`'](?P<function>[^'`]+)'"),
)
# Frames of libraries and the runtime, not of the service's own code.
_NOT_IN_APP = re.compile(
    r"site-packages|dist-packages|/lib/python\d|node_modules|<frozen |/usr/lib/|/gems/|"
    r"^(?:java|javax|jdk|sun|kotlin|scala|org\.springframework|org\.apache|io\.netty)\.|"
    r"^(?:runtime|net/http|internal)[./]|/go/src/|/go/pkg/mod/|/vendor/",
)


@dataclasses.dataclass(frozen=True)
class Failure:
    """What a failed request says about its failure."""

    service: str
    endpoint: str
    status_code: int
    message: str = ""
    exception_type: str = ""
    exception_message: str = ""
    stacktrace: str = ""
    fingerprint: str = ""  # the client's own


@dataclasses.dataclass(frozen=True)
class Grouping:
    fingerprint: str  # hex SHA-256, the group's key within the project
    kind: str  # client, stack, exception, message, status: how it was derived
    title: str  # a real message of the group, for people (never the normalised text)


def is_failure(status_code: int, exception_type: str) -> bool:
    return status_code >= 500 or bool(exception_type)


def group_of(failure: Failure) -> Grouping:
    title = _title(failure)
    if failure.fingerprint:
        return _grouping("client", title, failure.service, failure.fingerprint)
    frames = in_app_frames(failure.stacktrace) if failure.stacktrace else []
    if failure.exception_type and frames:
        return _grouping("stack", title, failure.service, failure.exception_type, *frames)
    where = (failure.service, failure.endpoint)
    if failure.exception_type:
        normal = parameterize(failure.exception_message)
        return _grouping("exception", title, *where, failure.exception_type, normal)
    if failure.message:
        return _grouping("message", title, *where, parameterize(failure.message))
    return _grouping("status", title, *where, str(failure.status_code))


def parameterize(message: str) -> str:
    """The message with its variable parts replaced by placeholders."""
    text = _PARAMETERS.sub(lambda match: _PLACEHOLDERS[match.lastgroup], message[:2000])
    return _SPACES.sub(" ", text).strip()


def in_app_frames(stacktrace: str) -> list[str]:
    """`module:function` of each frame of the service's own code, outermost first as
    the trace gives them; all frames if none is recognisably in-app."""
    frames = []
    for pattern in _FRAME_FORMATS:
        for match in pattern.finditer(stacktrace[:20000]):
            function, file = (match.group("function") or "?").strip(), match.group("file") or ""
            in_app = not (_NOT_IN_APP.search(file) or _NOT_IN_APP.search(function))
            frames.append((match.start(), f"{_module(file)}:{function}", in_app))
        if frames:
            break  # one format per trace
    frames.sort()
    own = [frame for _, frame, in_app in frames if in_app]
    return own or [frame for _, frame, _ in frames]


def _module(file: str) -> str:
    """The file without its directory, or the path after the app's root: stable across
    machines whose code lives in different places."""
    for marker in ("site-packages/", "node_modules/", "/src/", "/app/"):
        if marker in file:
            return file.rsplit(marker, 1)[1]
    return file.rsplit("/", 1)[-1]


def _title(failure: Failure) -> str:
    if failure.exception_type:
        text = f"{failure.exception_type}: {failure.exception_message}".rstrip(": ")
    else:
        text = failure.message or f"HTTP {failure.status_code}"
    return text[:500]


def _grouping(kind: str, title: str, *parts: str) -> Grouping:
    digest = hashlib.sha256("\x1f".join((f"v{VERSION}", kind, *parts)).encode()).hexdigest()
    return Grouping(digest, kind, title)
