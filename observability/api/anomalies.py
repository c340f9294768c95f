"""Anomalies (`/api/v1/anomalies/`): each endpoint's p95 latency, error rate and traffic
against its seasonal baseline, evaluated at `at` (observability/anomalies/)."""

from __future__ import annotations

import dataclasses

from django import forms
from django.db import connections
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apm_platform import db_router
from observability.anomalies import evaluate
from observability.anomalies.baseline import SIGNALS
from observability.api import params
from observability.api.schema import ERROR_RESPONSES


class AnomalyForm(params.WindowForm):
    """WindowForm rejects empty values; `at` is read as every window bound is."""

    at = params.LenientIsoDateTimeField(required=False)
    service = forms.CharField(required=False, max_length=128)
    endpoint = forms.CharField(required=False, max_length=512)
    signal = forms.ChoiceField(required=False, choices=[(s, s) for s in SIGNALS])


class BaselineSerializer(serializers.Serializer):
    median = serializers.FloatField()
    mad = serializers.FloatField(help_text="Median absolute deviation of the weekly values.")
    weeks = serializers.ListField(
        child=serializers.FloatField(),
        help_text="The same hour of the week in each past week, one week ago first; weeks "
        "with too few requests for a latency or error rate are left out.",
    )


class MinuteSerializer(serializers.Serializer):
    start = serializers.DateTimeField(help_text="The evaluated minute (UTC).")
    observed = serializers.FloatField(
        allow_null=True, help_text="The signal over the 3 minutes ending with this one."
    )
    requests = serializers.IntegerField(help_text="Requests in those 3 minutes.")
    threshold = serializers.FloatField(allow_null=True)
    breaching = serializers.BooleanField()


class FindingSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="<signal>:<service, `%` and `:` encoded>:<endpoint>")
    service = serializers.CharField()
    endpoint = serializers.CharField()
    signal = serializers.ChoiceField(
        choices=SIGNALS,
        help_text="latency_p95 (ms), error_rate (5xx share) or traffic_drop (requests/min).",
    )
    at = serializers.DateTimeField()
    firing = serializers.BooleanField(help_text="Every evaluated minute breaches.")
    observed = serializers.FloatField(allow_null=True, help_text="Of the last evaluated minute.")
    threshold = serializers.FloatField(help_text="Of the last evaluated minute.")
    baseline = BaselineSerializer()
    requests = serializers.IntegerField(help_text="Requests of the last evaluated minute.")
    minutes = MinuteSerializer(many=True, help_text="The evaluated minutes, oldest first.")


class AnomalyResultsSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    results = FindingSerializer(many=True)


class AnomaliesView(APIView):
    @extend_schema(
        summary="Anomalies against the seasonal baseline",
        description="For every endpoint (service, endpoint) with enough traffic: its p95 "
        "latency, error rate and traffic over the last closed minutes before `at`, against "
        "the same hour of the week over the last 4 weeks (median, MAD). A finding fires "
        "when its last 2 minutes breach. Findings that do not fire are listed too.",
        parameters=[
            OpenApiParameter("at", OpenApiTypes.DATETIME, description="Default now."),
            OpenApiParameter("service", str),
            OpenApiParameter("endpoint", str),
            OpenApiParameter("signal", str, enum=list(SIGNALS)),
        ],
        responses={200: AnomalyResultsSerializer, **ERROR_RESPONSES},
    )
    def get(self, request):
        form = AnomalyForm(request.query_params)
        if not form.is_valid():
            raise exceptions.ValidationError(form.errors)
        data = form.cleaned_data
        at = data["at"] or timezone.now()
        findings = evaluate(
            request.auth.project_id, at, service=data["service"] or None,
            endpoint=data["endpoint"] or None, connection=connections[db_router.read_alias()],
        )  # fmt: skip
        results = [
            {"key": finding.key, **dataclasses.asdict(finding)}
            for finding in findings
            if not data["signal"] or finding.signal == data["signal"]
        ]
        return Response({"at": at, "results": results})
