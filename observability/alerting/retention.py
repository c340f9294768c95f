"""Alert history and the delivery log follow the hourly rollups' retention
(APM_HOURLY_RETENTION_DAYS): older transitions, deliveries and attempts are deleted.
Alert states stay (one row per alert)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from observability.alerting.models import AlertEvent, Delivery, DeliveryAttempt


def apply_retention(now: datetime) -> dict[str, int]:
    cutoff = now - timedelta(days=settings.APM_HOURLY_RETENTION_DAYS)
    with transaction.atomic():
        attempts, _ = DeliveryAttempt.objects.filter(delivery__created_at__lt=cutoff).delete()
        deliveries, _ = Delivery.objects.filter(created_at__lt=cutoff).delete()
        events, _ = AlertEvent.objects.filter(at__lt=cutoff).delete()
    return {
        "apm_notification_attempt": attempts,
        "apm_notification_delivery": deliveries,
        "apm_alert_event": events,
    }
