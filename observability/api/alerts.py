"""Alerts (`/api/v1/alerts/`): the state of every alert rule instance (SLO pages and
tickets, anomalies, error groups) with its history; notification channels
(`/api/v1/notification-channels/`, with their health and delivery log) and the rules
that route alert kinds to them (`/api/v1/notification-rules/`)."""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.decorators import action

from observability.alerting.models import (
    Alert,
    AlertEvent,
    Channel,
    Delivery,
    DeliveryAttempt,
    NotificationRule,
)
from observability.api.config import (
    NOT_FOUND,
    ProjectConfigViewSet,
    StrictModelSerializer,
    crud_schema,
)
from observability.api.listing import ProjectScopedMixin, StrictCursorPagination
from observability.api.schema import ERROR_RESPONSES

HISTORY = 100


class AlertEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AlertEvent
        fields = ["id", "state", "at", "summary", "payload"]


class AlertSerializer(serializers.ModelSerializer):
    class Meta:
        model = Alert
        fields = ["id", "kind", "key", "state", "summary", "payload", "changed_at", "fired_at",
                  "resolved_at"]  # fmt: skip
        extra_kwargs = {"key": {"help_text": "What the kind's evaluator names: an SLO's id, an "
                                "error group's id, an anomaly's baseline."}}  # fmt: skip


class AlertDetailSerializer(AlertSerializer):
    history = AlertEventSerializer(many=True, help_text=f"The latest {HISTORY} transitions.")

    class Meta(AlertSerializer.Meta):
        fields = [*AlertSerializer.Meta.fields, "history"]


class AlertFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=Alert.Kind.choices)
    state = django_filters.ChoiceFilter(choices=Alert.State.choices)
    key = django_filters.CharFilter()

    class Meta:
        model = Alert
        fields: list[str] = []


class RecentFirstPagination(StrictCursorPagination):
    ordering = ("-changed_at", "-id")
    page_size = 100


@extend_schema_view(
    list=extend_schema(summary="List alerts and their states",
                       responses={200: AlertSerializer(many=True), **ERROR_RESPONSES}),
    retrieve=extend_schema(summary="Get an alert with its history",
                           responses={200: AlertDetailSerializer, **NOT_FOUND}),
)  # fmt: skip
class AlertViewSet(ProjectScopedMixin, viewsets.ReadOnlyModelViewSet):
    queryset = Alert.objects.all()
    serializer_class = AlertSerializer
    filterset_class = AlertFilter
    pagination_class = RecentFirstPagination

    def get_serializer(self, instance=None, *args, **kwargs):
        if self.action == "retrieve" and instance is not None:
            instance.history = instance.events.order_by("-at", "-id")[:HISTORY]
            return AlertDetailSerializer(instance, *args, **kwargs)
        return super().get_serializer(instance, *args, **kwargs)


# --- channels and rules ---------------------------------------------------------------------


class ChannelSerializer(StrictModelSerializer):
    class Meta:
        model = Channel
        fields = [
            "id", "name", "type", "url", "secret", "emails", "enabled", "created_at",
            "last_success_at", "last_failure_at", "last_error", "consecutive_failures",
            "failures_total", "deliveries_total",
        ]  # fmt: skip
        read_only_fields = [
            "created_at", "last_success_at", "last_failure_at", "last_error",
            "consecutive_failures", "failures_total", "deliveries_total",
        ]  # fmt: skip
        extra_kwargs = {
            "url": {"help_text": "http(s) URL of the webhook or Slack incoming webhook."},
            "secret": {"write_only": True, "help_text": "HMAC-SHA256 key of the webhook's "
                       "X-APM-Signature header (never shown again)."},
            "emails": {"help_text": "Recipients of an e-mail channel."},
            "consecutive_failures": {"help_text": "Failed attempts since the last success: "
                                     "above 0, the channel is failing."},
        }  # fmt: skip

    def validate(self, attrs):
        attrs = super().validate(attrs)
        merged = {**self.current("type", "url", "emails"), **attrs}
        kind = merged.get("type")
        if kind in (Channel.Type.WEBHOOK, Channel.Type.SLACK):
            if not merged.get("url"):
                raise serializers.ValidationError({"url": [f"Required for a {kind} channel."]})
            if not merged["url"].startswith(("http://", "https://")):
                raise serializers.ValidationError({"url": ["Must be an http(s) URL."]})
        if kind == Channel.Type.EMAIL and not merged.get("emails"):
            raise serializers.ValidationError({"emails": ["Required for an email channel."]})
        return attrs


class RuleSerializer(StrictModelSerializer):
    channels = serializers.PrimaryKeyRelatedField(
        many=True, queryset=Channel.objects.none(), help_text="Channel ids (this project's)."
    )

    class Meta:
        model = NotificationRule
        fields = ["id", "name", "kinds", "channels", "enabled", "created_at"]
        read_only_fields = ["created_at"]
        extra_kwargs = {
            "kinds": {"help_text": "Alert kinds routed (empty: every kind). Firing and "
                      "resolved transitions are both sent."},
        }  # fmt: skip

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        project_id = self.context.get("project_id")
        if project_id is not None:
            # Only this project's channels resolve; another project's id is a 400.
            self.fields["channels"].child_relation.queryset = Channel.objects.filter(
                project_id=project_id
            )


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = ["at", "ok", "status_code", "error", "duration_ms"]


class DeliverySerializer(serializers.ModelSerializer):
    event = AlertEventSerializer()
    kind = serializers.CharField(source="event.alert.kind")
    log = AttemptSerializer(many=True, help_text="Every attempt, oldest first.")

    class Meta:
        model = Delivery
        fields = ["id", "state", "kind", "event", "attempts", "next_attempt_at", "created_at",
                  "sent_at", "last_error", "log"]  # fmt: skip


class NewestFirst(StrictCursorPagination):
    ordering = ("-id",)
    page_size = 50


@crud_schema("notification channel", ChannelSerializer)
class ChannelViewSet(ProjectConfigViewSet):
    queryset = Channel.objects.all()
    serializer_class = ChannelSerializer

    @extend_schema(
        summary="A channel's delivery log, newest first",
        responses={200: DeliverySerializer(many=True), **NOT_FOUND},
    )
    @action(detail=True, methods=["get"], pagination_class=NewestFirst)
    def deliveries(self, request, pk=None):
        channel = self.get_object()
        deliveries = (
            Delivery.objects.filter(project_id=channel.project_id, channel=channel)
            .select_related("event__alert")
            .prefetch_related("log")
        )
        page = self.paginate_queryset(deliveries)
        return self.get_paginated_response(DeliverySerializer(page, many=True).data)


@crud_schema("notification rule", RuleSerializer)
class RuleViewSet(ProjectConfigViewSet):
    queryset = NotificationRule.objects.prefetch_related("channels")
    serializer_class = RuleSerializer
