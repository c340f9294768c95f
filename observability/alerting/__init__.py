"""SLOs, burn-rate alerts, alert states and their notifications (docs/ALERTING.md).

- models.py: SLOs, alert states and history, channels, rules, the delivery outbox.
- sli.py: good/total request counts of SLOs over windows, from rollups and raw rows.
- slos.py: burn rates and the SRE workbook's multi-window rules, evaluated per minute.
- state.py: `record` / `record_many`, the one state machine every alert kind goes
  through (SLO pages and tickets, anomalies, error groups).
- notify.py: the outbox drained off the scheduler's thread, and the channel senders.
"""
