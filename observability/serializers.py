"""DRF serializers for the read APIs and single-record create."""

from __future__ import annotations

import functools
import math
import re
from datetime import timedelta

import orjson
from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from observability.models import ApiRequest, Endpoint

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
METHOD = re.compile(r"^[A-Z]{1,16}$")
MAX_LATENCY_MS = 86_400_000
MAX_ERROR_MESSAGE_BYTES = 4096
MAX_ATTRIBUTES_BYTES = 8192
MAX_FUTURE = timedelta(minutes=5)


class ApiRequestSerializer(serializers.ModelSerializer):
    status_class = serializers.CharField(read_only=True)

    class Meta:
        model = ApiRequest
        fields = [
            "event_id",
            "time",
            "service",
            "endpoint",
            "method",
            "status_code",
            "status_class",
            "latency_ms",
            "trace_id",
            "span_id",
            "environment",
            "host",
            "error_message",
            "request_bytes",
            "response_bytes",
            "attributes",
        ]
        # No pre-insert uniqueness query: the database's (event_id, time) constraint
        # decides, and the view turns a violation into 409.
        validators = []
        extra_kwargs = {
            "event_id": {"required": False, "help_text": "Unique event id; generated when absent."},
            "request_bytes": {"min_value": 0},
            "response_bytes": {"min_value": 0},
        }

    def validate_time(self, value):
        now = timezone.now()
        if value > now + MAX_FUTURE:
            raise serializers.ValidationError("Is more than 5 minutes in the future.")
        if value < now - timedelta(days=settings.APM_RAW_RETENTION_DAYS):
            raise serializers.ValidationError(
                f"Is older than the raw retention ({settings.APM_RAW_RETENTION_DAYS} days)."
            )
        return value

    def validate_method(self, value: str) -> str:
        value = value.upper()
        if not METHOD.match(value):
            raise serializers.ValidationError("Must be an HTTP method such as GET or POST.")
        return value

    def validate_latency_ms(self, value: float) -> float:
        if not math.isfinite(value) or not 0 <= value <= MAX_LATENCY_MS:
            raise serializers.ValidationError(
                f"Must be a finite number from 0 to {MAX_LATENCY_MS}."
            )
        return value

    def validate_trace_id(self, value: str) -> str:
        if value and not HEX32.match(value.lower()):
            raise serializers.ValidationError("Must be 32 hexadecimal characters.")
        return value.lower()

    def validate_span_id(self, value: str) -> str:
        if value and not HEX16.match(value.lower()):
            raise serializers.ValidationError("Must be 16 hexadecimal characters.")
        return value.lower()

    def validate_error_message(self, value: str) -> str:
        if len(value.encode()) > MAX_ERROR_MESSAGE_BYTES:
            raise serializers.ValidationError(f"Must be at most {MAX_ERROR_MESSAGE_BYTES} bytes.")
        return value

    def validate_attributes(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        if len(orjson.dumps(value)) > MAX_ATTRIBUTES_BYTES:
            raise serializers.ValidationError(
                f"Must be at most {MAX_ATTRIBUTES_BYTES} bytes of JSON."
            )
        return value


class EndpointSerializer(serializers.ModelSerializer):
    class Meta:
        model = Endpoint
        fields = ["service", "endpoint", "first_seen"]


class LatencySerializer(serializers.Serializer):
    avg = serializers.FloatField(allow_null=True)
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)
    p99 = serializers.FloatField(allow_null=True)
    max = serializers.FloatField(allow_null=True)


class KpiSerializer(serializers.Serializer):
    """KPIs of a set of requests. Percentiles are within 0.9 % of the exact value."""

    hits = serializers.IntegerField()
    errors = serializers.IntegerField(help_text="Requests answered with a 5xx status.")
    error_rate = serializers.FloatField(help_text="errors / hits (0 without hits).")
    rps = serializers.FloatField(help_text="Requests per second over the window or bucket.")
    apdex = serializers.FloatField(
        allow_null=True,
        help_text="(satisfied + tolerating / 2) / hits; satisfied <= T, tolerating <= 4T, "
        "5xx frustrated; T per service. Null without hits.",
    )
    latency_ms = LatencySerializer()


class TimeseriesPointSerializer(KpiSerializer):
    bucket = serializers.DateTimeField(help_text="Start of the bucket (UTC).")


class TopEndpointSerializer(KpiSerializer):
    service = serializers.CharField()
    endpoint = serializers.CharField()
    method = serializers.CharField()


class ServiceKpiSerializer(KpiSerializer):
    service = serializers.CharField()


@functools.cache
def results_of(item_serializer):
    """A {"results": [...]} envelope serializer for the OpenAPI schema (one per item type)."""
    return type(
        f"{item_serializer.__name__.removesuffix('Serializer')}ResultsSerializer",
        (serializers.Serializer,),
        {"results": item_serializer(many=True)},
    )
