"""SLOs, alerts and notifications (registered by observability/models.py, app label
`observability`; tables created by migration 0020)."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from observability.models import Project


class Slo(models.Model):
    """A service level objective over a service's requests (optionally some endpoints)."""

    class Objective(models.TextChoices):
        AVAILABILITY = "availability"  # good: not a 5xx
        LATENCY = "latency"  # good: latency <= latency_threshold_ms (sketch bucket)

    WINDOWS = (7, 28, 30)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    name = models.CharField(max_length=200)
    service = models.CharField(max_length=128)
    # Empty: every endpoint of the service. Both set: an endpoint must match both.
    endpoints = ArrayField(models.CharField(max_length=512), default=list, blank=True, size=100)
    endpoint_pattern = models.CharField(max_length=512, blank=True, default="")  # glob, `*`
    environment = models.CharField(max_length=64, blank=True, default="")  # '' = all
    objective = models.CharField(max_length=16, choices=Objective.choices)
    latency_threshold_ms = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.01), MaxValueValidator(600_000)]
    )
    # Percent of good requests, e.g. 99.9.
    target = models.DecimalField(
        max_digits=6, decimal_places=3,
        validators=[MinValueValidator(Decimal("50")), MaxValueValidator(Decimal("99.999"))],
    )  # fmt: skip
    window_days = models.PositiveSmallIntegerField(
        choices=[(days, f"{days} days") for days in WINDOWS], default=30
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "apm_slo"
        constraints = [
            # The API lists a project's SLOs; names are how people and Prometheus know them.
            models.UniqueConstraint(fields=["project", "name"], name="apm_slo_name"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.objective} {self.target}% / {self.window_days}d)"

    @property
    def error_budget(self) -> float:
        """The fraction of requests that may be bad."""
        return float(1 - self.target / 100)


class SloStatus(models.Model):
    """An SLO's last evaluation (the per-minute job writes it; /metrics reads it)."""

    slo = models.OneToOneField(Slo, on_delete=models.CASCADE, primary_key=True, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    evaluated_at = models.DateTimeField()
    total = models.BigIntegerField()  # requests in the SLO window
    good = models.BigIntegerField()
    budget_remaining = models.FloatField()  # fraction of the budget left (negative: overspent)
    burn_rates = models.JSONField(default=dict)  # window label -> burn rate

    class Meta:
        db_table = "apm_slo_status"

    def __str__(self) -> str:
        return f"SLO {self.slo_id} at {self.evaluated_at:%Y-%m-%d %H:%M}"


class Alert(models.Model):
    """The state of one alert rule instance: (project, kind, key), e.g. (p, slo_page, "12")."""

    class Kind(models.TextChoices):
        SLO_PAGE = "slo_page"
        SLO_TICKET = "slo_ticket"
        ANOMALY = "anomaly"
        ERROR_GROUP = "error_group"

    class State(models.TextChoices):
        OK = "ok"
        FIRING = "firing"
        RESOLVED = "resolved"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    key = models.CharField(max_length=255)
    state = models.CharField(max_length=16, choices=State.choices, default=State.OK)
    summary = models.TextField(blank=True, default="")
    payload = models.JSONField(default=dict, blank=True)
    changed_at = models.DateTimeField()  # of the last transition
    fired_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "apm_alert"
        constraints = [
            # record_many() finds the states of a batch of keys of one kind.
            models.UniqueConstraint(fields=["project", "kind", "key"], name="apm_alert_key"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.key}: {self.state}"


class AlertEvent(models.Model):
    """One transition of an alert (its history), and what notifications carry."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    alert = models.ForeignKey(
        Alert, on_delete=models.CASCADE, related_name="events", db_index=False
    )
    state = models.CharField(max_length=16, choices=Alert.State.choices)
    at = models.DateTimeField()
    summary = models.TextField(blank=True, default="")
    payload = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "apm_alert_event"
        indexes = [
            # An alert's history, newest first (the alert detail).
            models.Index(fields=["alert", "-at"], name="apm_alert_event_alert"),
            # A project's history (the event list).
            models.Index(fields=["project", "-at"], name="apm_alert_event_project"),
        ]

    def __str__(self) -> str:
        return f"alert {self.alert_id} {self.state} at {self.at:%Y-%m-%d %H:%M}"


class Channel(models.Model):
    """Where notifications go: a signed JSON webhook, a Slack incoming webhook, e-mail."""

    class Type(models.TextChoices):
        WEBHOOK = "webhook"
        SLACK = "slack"
        EMAIL = "email"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    name = models.CharField(max_length=200)
    type = models.CharField(max_length=16, choices=Type.choices)
    url = models.URLField(max_length=2000, blank=True, default="")
    secret = models.CharField(max_length=200, blank=True, default="")  # HMAC key (webhook)
    emails = ArrayField(models.EmailField(), default=list, blank=True, size=50)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Health, updated by each delivery attempt (the API and /metrics show it).
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    consecutive_failures = models.PositiveIntegerField(default=0)
    failures_total = models.PositiveBigIntegerField(default=0)
    deliveries_total = models.PositiveBigIntegerField(default=0)

    class Meta:
        db_table = "apm_notification_channel"
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="apm_channel_name"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.type})"


class NotificationRule(models.Model):
    """Sends the transitions of alerts of some kinds (all when empty) to channels."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    name = models.CharField(max_length=200)
    kinds = ArrayField(
        models.CharField(max_length=32, choices=Alert.Kind.choices), default=list, blank=True
    )
    channels = models.ManyToManyField(
        Channel, related_name="rules", db_table="apm_notification_rule_channel"
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "apm_notification_rule"
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="apm_notification_rule_name"),
        ]

    def __str__(self) -> str:
        return self.name


class Delivery(models.Model):
    """The outbox: one alert event to one channel, sent (with retries) by its own job."""

    class State(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"  # gave up after the last retry

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(AlertEvent, on_delete=models.CASCADE, related_name="+")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        db_table = "apm_notification_delivery"
        indexes = [
            # The sender claims due pending deliveries; only pending ones are in it.
            models.Index(
                fields=["next_attempt_at"], name="apm_delivery_due",
                condition=models.Q(state="pending"),
            ),
        ]  # fmt: skip

    def __str__(self) -> str:
        return f"event {self.event_id} to channel {self.channel_id}: {self.state}"


class DeliveryAttempt(models.Model):
    """The log of every attempt to send a delivery."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="log")
    at = models.DateTimeField()
    ok = models.BooleanField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    duration_ms = models.FloatField()

    class Meta:
        db_table = "apm_notification_attempt"

    def __str__(self) -> str:
        return f"delivery {self.delivery_id} at {self.at:%H:%M:%S}: {'ok' if self.ok else 'failed'}"
