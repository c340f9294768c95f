"""SLOs (`/api/v1/slos/`) and their status (`/api/v1/slos/{id}/status/`): SLI over the
window, error budget, burn rates and the budget's history (observability/alerting/)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from observability.alerting import slos
from observability.alerting.models import Alert, Slo
from observability.api.config import ProjectConfigViewSet, StrictModelSerializer, crud_schema
from observability.api.errors import ErrorSerializer
from observability.api.schema import ERROR_RESPONSES


class SloSerializer(StrictModelSerializer):
    target = serializers.DecimalField(
        max_digits=6,
        decimal_places=3,
        min_value=Decimal("50"),
        max_value=Decimal("99.999"),
        coerce_to_string=False,
        help_text="Percent of good requests over the window, e.g. 99.9.",
    )

    class Meta:
        model = Slo
        fields = [
            "id", "name", "service", "endpoints", "endpoint_pattern", "environment", "objective",
            "latency_threshold_ms", "target", "window_days", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = ["created_at", "updated_at"]
        extra_kwargs = {
            "endpoints": {"help_text": "Route templates counted (empty: every endpoint)."},
            "endpoint_pattern": {"help_text": "Glob of route templates counted, `*` for any "
                                 "characters, e.g. `/api/orders/*` (empty: no pattern)."},
            "environment": {"help_text": "Only this environment (empty: all)."},
            "objective": {"help_text": "availability: good = not a 5xx; latency: good = "
                          "latency <= latency_threshold_ms (read from the latency sketch, "
                          "within its 0.89 % bucket)."},
            "latency_threshold_ms": {"help_text": "Required for a latency objective only."},
        }  # fmt: skip

    def validate(self, attrs):
        attrs = super().validate(attrs)
        merged = {**self.current("objective", "latency_threshold_ms"), **attrs}
        if merged.get("objective") == Slo.Objective.LATENCY:
            if merged.get("latency_threshold_ms") is None:
                raise serializers.ValidationError(
                    {"latency_threshold_ms": ["Required for a latency objective."]}
                )
        elif merged.get("latency_threshold_ms") is not None:
            raise serializers.ValidationError(
                {"latency_threshold_ms": ["Only a latency objective has a threshold."]}
            )
        return attrs


class CountsSerializer(serializers.Serializer):
    total = serializers.IntegerField(help_text="Requests counted.")
    good = serializers.IntegerField()
    bad = serializers.IntegerField()


class BudgetSerializer(serializers.Serializer):
    total = serializers.FloatField(help_text="Bad requests the window may have.")
    spent = serializers.IntegerField(help_text="Bad requests in the window.")
    remaining = serializers.FloatField(help_text="total - spent (negative: overspent).")
    remaining_fraction = serializers.FloatField(help_text="remaining / total (1 without "
                                                "requests).")  # fmt: skip


class HistoryPointSerializer(serializers.Serializer):
    bucket = serializers.DateTimeField(help_text="Start of the UTC hour.")
    total = serializers.IntegerField()
    bad = serializers.IntegerField()
    remaining = serializers.FloatField(
        help_text="Fraction of the window's budget left after this hour."
    )


class SloStatusSerializer(serializers.Serializer):
    slo = SloSerializer()
    at = serializers.DateTimeField(help_text="The minute evaluated (now).")
    window_start = serializers.DateTimeField()
    sli = serializers.FloatField(allow_null=True, help_text="good / total; null without requests.")
    counts = CountsSerializer()
    error_budget = BudgetSerializer()
    burn_rates = serializers.DictField(
        child=serializers.FloatField(),
        help_text="Bad fraction / error budget over 5m, 30m, 1h, 2h, 6h, 1d, 3d.",
    )
    alerts = serializers.DictField(
        child=serializers.CharField(), help_text="State of the page and ticket alerts."
    )
    budget_history = HistoryPointSerializer(many=True)


@crud_schema("SLO", SloSerializer)
class SloViewSet(ProjectConfigViewSet):
    queryset = Slo.objects.all()
    serializer_class = SloSerializer

    def perform_destroy(self, instance):
        Alert.objects.filter(project_id=instance.project_id, kind__in=slos.SEVERITY_KINDS,
                             key=str(instance.pk)).delete()  # fmt: skip
        instance.delete()

    @extend_schema(
        summary="SLI, error budget, burn rates and budget history of an SLO, now",
        description="Burn rate = bad fraction of the window / (1 - target). The history is "
        "the budget's burn-down over the SLO window, hour by hour. See docs/ALERTING.md.",
        responses={200: SloStatusSerializer, 404: ErrorSerializer, **ERROR_RESPONSES},
    )
    @action(detail=True, methods=["get"])
    def status(self, request, pk=None):
        slo = self.get_object()
        at = slos.evaluation_minute()
        (evaluation,) = slos.evaluate_slos(slo.project_id, at, [slo])
        counts = evaluation.window
        alerts = dict.fromkeys(slos.SEVERITY_KINDS, Alert.State.OK.value) | dict(
            Alert.objects.filter(project_id=slo.project_id, kind__in=slos.SEVERITY_KINDS,
                                 key=str(slo.pk)).values_list("kind", "state")
        )  # fmt: skip
        body = {
            "slo": slo,
            "at": at,
            "window_start": at - timedelta(days=slo.window_days),
            "sli": counts.sli,
            "counts": {"total": counts.total, "good": counts.good, "bad": counts.bad},
            "error_budget": {
                "total": evaluation.budget_total,
                "spent": counts.bad,
                "remaining": evaluation.budget_total - counts.bad,
                "remaining_fraction": evaluation.budget_remaining,
            },
            "burn_rates": evaluation.burn_rates(),
            "alerts": alerts,
            "budget_history": slos.budget_history(slo, at),
        }
        return Response(SloStatusSerializer(body).data)
