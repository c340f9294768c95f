"""The alerting series of /metrics, read from the database at scrape time.

The per-minute job stores each SLO's last evaluation (SloStatus); a scrape reads those
rows, the firing alerts and the channels' health in three queries, whichever worker
serves it (no per-process state to aggregate):

    apm_slo_sli, apm_slo_error_budget_remaining, apm_slo_target, apm_slo_burn_rate{window}
    apm_alerts_firing{kind}
    apm_notification_channel_consecutive_failures, apm_notification_channel_failures_total,
    apm_notification_deliveries_pending
"""

from __future__ import annotations

from django.db.models import Count
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from observability.alerting.models import Alert, Channel, Delivery, SloStatus
from observability.alerting.slos import BURN_WINDOWS

SLO_LABELS = ["project", "slo_id", "slo", "service", "objective"]
CHANNEL_LABELS = ["project", "channel", "type"]


class AlertingCollector(Collector):
    def collect(self):
        yield from self._slos()
        firing = GaugeMetricFamily("apm_alerts_firing", "Alerts firing now, by kind.",
                                   labels=["project", "kind"])  # fmt: skip
        for row in (
            Alert.objects.filter(state=Alert.State.FIRING)
            .values("project__slug", "kind").annotate(n=Count("id")).order_by()
        ):  # fmt: skip
            firing.add_metric([row["project__slug"], row["kind"]], row["n"])
        yield firing
        yield from self._channels()

    def _slos(self):
        sli = GaugeMetricFamily("apm_slo_sli", "Good fraction of the SLO window's requests "
                                "at the last evaluation.", labels=SLO_LABELS)  # fmt: skip
        remaining = GaugeMetricFamily("apm_slo_error_budget_remaining", "Fraction of the "
                                      "error budget left (negative: overspent).",
                                      labels=SLO_LABELS)  # fmt: skip
        target = GaugeMetricFamily("apm_slo_target", "The SLO's target, a fraction.",
                                   labels=SLO_LABELS)  # fmt: skip
        burn = GaugeMetricFamily(
            "apm_slo_burn_rate", "Bad fraction over the window divided by the error budget.",
            labels=[*SLO_LABELS, "window"],
        )
        for status in SloStatus.objects.select_related("slo", "project"):
            slo = status.slo
            labels = [status.project.slug, str(slo.pk), slo.name, slo.service, slo.objective]
            if status.total:
                sli.add_metric(labels, status.good / status.total)
            remaining.add_metric(labels, status.budget_remaining)
            target.add_metric(labels, float(slo.target / 100))
            for window in BURN_WINDOWS:
                burn.add_metric([*labels, window], status.burn_rates.get(window, 0.0))
        yield from (sli, remaining, target, burn)

    def _channels(self):
        failing = GaugeMetricFamily(
            "apm_notification_channel_consecutive_failures",
            "Failed delivery attempts since the channel's last success (above 0: failing).",
            labels=CHANNEL_LABELS,
        )
        failures = CounterMetricFamily(
            "apm_notification_channel_failures", "Failed delivery attempts.", labels=CHANNEL_LABELS
        )
        pending = GaugeMetricFamily("apm_notification_deliveries_pending",
                                    "Deliveries waiting to be sent or retried.",
                                    labels=CHANNEL_LABELS)  # fmt: skip
        waiting = dict(
            Delivery.objects.filter(state=Delivery.State.PENDING)
            .values_list("channel_id").annotate(n=Count("id")).order_by()
        )  # fmt: skip
        for channel in Channel.objects.select_related("project"):
            labels = [channel.project.slug, channel.name, channel.type]
            failing.add_metric(labels, channel.consecutive_failures)
            failures.add_metric(labels, channel.failures_total)
            pending.add_metric(labels, waiting.get(channel.pk, 0))
        yield from (failing, failures, pending)
