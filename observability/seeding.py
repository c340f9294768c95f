"""Synthetic but realistic request traffic, for demos, tests and benchmarks.

Services have routes with their own latency profile (log-normal, some slow with heavy
tails) and error rates; traffic follows a day/night cycle; a few short error bursts
per service multiply 5xx rates and latency, as incidents do.
"""

from __future__ import annotations

import dataclasses
import math
import random
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

from faker import Faker


@dataclasses.dataclass(frozen=True)
class Route:
    method: str
    endpoint: str
    median_ms: float
    sigma: float = 0.5  # log-normal shape: 0.5 ordinary, 0.9+ heavy tail
    error_rate: float = 0.005  # 5xx
    client_error_rate: float = 0.02  # 4xx
    weight: float = 1.0


CATALOGUE: dict[str, list[Route]] = {
    "checkout": [
        Route("GET", "/cart", 35, weight=4),
        Route("POST", "/cart/items", 55, weight=2),
        Route("DELETE", "/cart/items/{id}", 40, weight=0.5),
        Route("POST", "/checkout", 220, sigma=0.7, error_rate=0.015, weight=1),
    ],
    "users": [
        Route("GET", "/users/{id}", 22, weight=5),
        Route("POST", "/users", 90, client_error_rate=0.08, weight=0.5),
        Route("POST", "/login", 140, client_error_rate=0.12, weight=2),
        Route("GET", "/users/{id}/orders", 80, sigma=0.6, weight=1.5),
    ],
    "catalog": [
        Route("GET", "/products", 60, weight=6),
        Route("GET", "/products/{id}", 28, weight=8),
        Route("GET", "/categories", 12, sigma=0.3, weight=2),
    ],
    "search": [
        Route("GET", "/search", 260, sigma=0.9, error_rate=0.01, weight=5),
        Route("GET", "/search/suggest", 18, sigma=0.4, weight=7),
    ],
    "payments": [
        Route(
            "POST", "/payments", 420, sigma=0.8, error_rate=0.02, client_error_rate=0.05, weight=1
        ),
        Route("GET", "/payments/{id}", 45, weight=1),
        Route("POST", "/refunds", 600, sigma=1.0, error_rate=0.03, weight=0.2),
    ],
    "notifications": [
        Route("POST", "/notifications/email", 180, sigma=0.7, error_rate=0.01, weight=1),
        Route("GET", "/health", 2, sigma=0.3, error_rate=0.0, client_error_rate=0.0, weight=2),
    ],
}

SUCCESS_STATUS = {"GET": 200, "POST": 201, "DELETE": 204, "PUT": 200, "PATCH": 200}
CLIENT_ERRORS = [400, 401, 403, 404, 409, 422, 429]
# 5xx answers without an exception: messages whose variable parts differ per request,
# as real ones do (the error groups see through them: observability/error_groups/).
SERVER_ERRORS = {
    502: "Bad Gateway: upstream {ip}:{port} reset the connection",
    503: "Service Unavailable: connection pool exhausted (timeout after {ms} ms)",
    504: "Gateway Timeout: upstream did not respond within {ms} ms",
}
# 500s raise an exception at one of two call sites of the service's own code.
EXCEPTIONS = (
    ("KeyError", "'order {hex}'", "load_order", "orders.py"),
    ("ValueError", "invalid quantity {n} for item {hex}", "parse_item", "items.py"),
)
STACKTRACE = """Traceback (most recent call last):
  File "/usr/lib/python3/dist-packages/django/core/handlers/base.py", line 197, in _get_response
    response = wrapped_callback(request, *callback_args, **callback_kwargs)
  File "/srv/{service}/app/views.py", line {view_line}, in {handler}
    return {function}(request)
  File "/srv/{service}/app/{module}", line {line}, in {function}
    raise {kind}(detail)
{kind}: {message}"""
BURST_LENGTH = timedelta(minutes=15)
BURST_ERROR_RATE = 0.35
BURST_SLOWDOWN = 4.0


def diurnal_weight(moment: datetime) -> float:
    """Relative traffic at this time of day (UTC): quiet at night, peak mid-afternoon."""
    hour = moment.hour + moment.minute / 60
    return 0.15 + 0.85 * math.sin(math.pi * ((hour - 3) % 24) / 24) ** 2


@dataclasses.dataclass
class TrafficGenerator:
    start: datetime
    end: datetime
    services: list[str]
    seed: int | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.services) - set(CATALOGUE))
        if unknown:
            raise ValueError(f"unknown services {unknown}; known: {', '.join(CATALOGUE)}")
        self.rng = random.Random(self.seed)  # noqa: S311 - synthetic data, not security
        faker = Faker()
        faker.seed_instance(self.seed)
        # Faker is slow per call; a pool of values sampled many times is enough realism.
        self.user_agents = [faker.user_agent() for _ in range(200)]
        self.client_ips = [faker.ipv4_public() for _ in range(500)]
        self.routes = [
            (service, route) for service in self.services for route in CATALOGUE[service]
        ]
        self.route_weights = [route.weight for _, route in self.routes]
        self.bursts = self._plan_bursts()

    def _plan_bursts(self) -> dict[str, list[datetime]]:
        days = max(1.0, (self.end - self.start).total_seconds() / 86400)
        span = (self.end - self.start - BURST_LENGTH).total_seconds()
        return {
            service: [
                self.start + timedelta(seconds=self.rng.uniform(0, max(span, 0)))
                for _ in range(max(1, round(days / 3)))
            ]
            for service in self.services
        }

    def in_burst(self, service: str, moment: datetime) -> bool:
        return any(start <= moment < start + BURST_LENGTH for start in self.bursts[service])

    def _sample_time(self) -> datetime:
        span = (self.end - self.start).total_seconds()
        while True:  # rejection sampling against the day/night curve
            moment = self.start + timedelta(seconds=self.rng.random() * span)
            if self.rng.random() < diurnal_weight(moment):
                return moment

    def events(self, count: int) -> Iterator[dict]:
        rng = self.rng
        for _ in range(count):
            service, route = rng.choices(self.routes, self.route_weights)[0]
            moment = self._sample_time()
            burst = self.in_burst(service, moment)
            latency = rng.lognormvariate(math.log(route.median_ms), route.sigma)
            error_rate = BURST_ERROR_RATE if burst else route.error_rate
            if burst:
                latency *= BURST_SLOWDOWN
            roll = rng.random()
            failure = {}
            if roll < error_rate:
                status = rng.choice((500, *SERVER_ERRORS))
                failure = self._server_error(service, route, status)
            elif roll < error_rate + route.client_error_rate:
                status = rng.choice(CLIENT_ERRORS)
            else:
                status = SUCCESS_STATUS[route.method]
            yield {
                "time": moment,
                "service": service,
                "endpoint": route.endpoint,
                "method": route.method,
                "status_code": status,
                "latency_ms": round(latency, 3),
                "event_id": uuid.UUID(int=rng.getrandbits(128), version=4),
                "trace_id": f"{rng.getrandbits(128):032x}",
                "span_id": f"{rng.getrandbits(64):016x}",
                "environment": "production" if rng.random() < 0.9 else "staging",
                "host": f"{service}-{rng.randrange(3)}",
                "error_message": failure.pop("error_message", ""),
                "request_bytes": int(rng.lognormvariate(6, 1)) if route.method != "GET" else 0,
                "response_bytes": int(rng.lognormvariate(7.5, 1.2)),
                "attributes": {
                    "user_agent": rng.choice(self.user_agents),
                    "client_ip": rng.choice(self.client_ips),
                },
                **failure,  # exception_type, exception_message, stacktrace of a 500
            }

    def _server_error(self, service: str, route: Route, status: int) -> dict:
        rng = self.rng
        values = {"ip": f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
                  "port": rng.choice((443, 5432, 6379, 8080)), "ms": rng.randint(900, 30000),
                  "hex": f"{rng.getrandbits(40):010x}", "n": rng.randint(-5, 10_000)}  # fmt: skip
        if status != 500:
            return {"error_message": SERVER_ERRORS[status].format(**values)}
        kind, template, function, module = rng.choice(EXCEPTIONS)
        message = template.format(**values)
        handler = f"{route.method.lower()}_{route.endpoint.strip('/').split('/')[0] or 'root'}"
        return {
            "error_message": f"{kind}: {message}",
            "exception_type": kind,
            "exception_message": message,
            "stacktrace": STACKTRACE.format(
                service=service, handler=handler, function=function, module=module, kind=kind,
                message=message, view_line=rng.randint(20, 24), line=rng.randint(40, 44),
            ),
        }  # fmt: skip
