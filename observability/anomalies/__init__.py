"""Anomaly detection against a seasonal baseline (docs/ANOMALIES.md): `evaluate()`."""

from observability.anomalies.baseline import Baseline
from observability.anomalies.detector import Finding, Minute, evaluate

__all__ = ["Baseline", "Finding", "Minute", "evaluate"]
