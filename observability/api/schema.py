"""OpenAPI pieces shared by the views' `extend_schema` declarations."""

from __future__ import annotations

import functools

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from observability.api.errors import ErrorSerializer

# The errors every authenticated endpoint can answer.
ERROR_RESPONSES = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid parameters or fields."),
    401: OpenApiResponse(ErrorSerializer, description="Missing, invalid or revoked API key."),
    403: OpenApiResponse(ErrorSerializer, description="The API key lacks the needed scope."),
    503: OpenApiResponse(ErrorSerializer, description="Database unavailable; see Retry-After."),
}

LIMIT = OpenApiParameter(
    "limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
    description="How many results (1-100).",
)  # fmt: skip


@functools.cache
def results_of(item_serializer):
    """A {"results": [...]} envelope serializer (one per item type)."""
    return type(
        f"{item_serializer.__name__.removesuffix('Serializer')}ResultsSerializer",
        (serializers.Serializer,),
        {"results": item_serializer(many=True)},
    )
