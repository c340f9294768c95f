"""The HTTP API (/api/v1/ and the OTLP receiver): DRF views, serializers, parameters.

One module per resource; each view authenticates, parses its parameters, calls the
domain (observability.ingest, observability.analytics, observability.ai) and serializes.
This package is the only one that knows Django REST framework.
"""
